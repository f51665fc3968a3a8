//! The variables themselves: one named constant each, and the documentation of the
//! user-facing ones exactly as the README's configuration table shows it.

/// The image to run (required).
pub const SCAR_IMAGE: &str = "SCAR_IMAGE";
/// Script text run with the image's `/bin/sh`.
pub const SCAR_SCRIPT: &str = "SCAR_SCRIPT";
/// Script path or `s3://` URL.
pub const SCAR_SCRIPT_FILE: &str = "SCAR_SCRIPT_FILE";
/// `s3://bucket/prefix` for outputs.
pub const SCAR_OUTPUT: &str = "SCAR_OUTPUT";
/// Seconds kept before the deadline to stop the container and upload.
pub const SCAR_TIMEOUT_MARGIN: &str = "SCAR_TIMEOUT_MARGIN";
/// `auto`, `namespace` or `preload`.
pub const SCAR_ENGINE: &str = "SCAR_ENGINE";
/// Cache root.
pub const SCAR_CACHE_DIR: &str = "SCAR_CACHE_DIR";
/// Directory of the preload engine's libraries.
pub const SCAR_PRELOAD_DIR: &str = "SCAR_PRELOAD_DIR";
/// `warn` or `refuse`: what the preload engine does with a statically linked program.
pub const SCAR_PRELOAD_STATIC: &str = "SCAR_PRELOAD_STATIC";
/// Cache cap in MiB.
pub const SCAR_CACHE_MAX_MB: &str = "SCAR_CACHE_MAX_MB";
// Seconds a pull of an image by another sandbox sharing the cache may stay silent before a
// waiting one pulls on its own: read by scar-rootfs, for the bootstrap and `scar` alike.
pub use scar_rootfs::cache::SCAR_CACHE_STALE_SECONDS;
/// `if-not-present` or `always`.
pub const SCAR_PULL_POLICY: &str = "SCAR_PULL_POLICY";
/// Pull during the init phase.
pub const SCAR_PREFETCH: &str = "SCAR_PREFETCH";
// Registry user name, password (never reaching the container or a log) and plain-HTTP list:
// parsed by scar-rootfs, with one rule for the bootstrap and `scar`.
pub use scar_rootfs::registry::settings::{
    SCAR_INSECURE_REGISTRIES, SCAR_PULL_RANGES, SCAR_REGISTRY_PASSWORD, SCAR_REGISTRY_USERNAME,
};
/// Prefix of variables copied (without the prefix) into the container.
pub const SCAR_ENV_PREFIX: &str = "SCAR_ENV_";
/// Hand the function's AWS credentials to the container.
pub const SCAR_PASS_AWS_CREDENTIALS: &str = "SCAR_PASS_AWS_CREDENTIALS";
/// Accept `{"script": "<base64>"}` in a direct invocation.
pub const SCAR_ALLOW_INVOKE_SCRIPT: &str = "SCAR_ALLOW_INVOKE_SCRIPT";
/// Answer HTTP requests in the Runtime API's streaming response mode (a Function URL with
/// `InvokeMode: RESPONSE_STREAM`): the event does not say how the URL is set up.
pub const SCAR_HTTP_STREAMING: &str = "SCAR_HTTP_STREAMING";
/// Log filter in `tracing` syntax.
pub const SCAR_LOG: &str = "SCAR_LOG";
/// `text` or `json`.
pub const SCAR_LOG_FORMAT: &str = "SCAR_LOG_FORMAT";
/// The SDK's S3-specific endpoint override.
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// The SDK's endpoint override for every service.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// Set by Lambda: `host:port` of the Runtime API (the emulator adds a scheme and a path).
pub const AWS_LAMBDA_RUNTIME_API: &str = "AWS_LAMBDA_RUNTIME_API";
/// Set by Lambda on Managed Instances (the function's per-environment maximum concurrency):
/// how many invocations this process serves at once.
pub const AWS_LAMBDA_MAX_CONCURRENCY: &str = "AWS_LAMBDA_MAX_CONCURRENCY";
/// Largest accepted `AWS_LAMBDA_MAX_CONCURRENCY`.
pub const MAX_CONCURRENCY_LIMIT: usize = 1024;
/// Set by Lambda: the function's credentials and region, handed to the container only with
/// `SCAR_PASS_AWS_CREDENTIALS`.
pub const AWS_CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
];

/// Default of `SCAR_TIMEOUT_MARGIN` in seconds.
pub const DEFAULT_TIMEOUT_MARGIN_SECS: f64 = 10.0;
/// Default of `SCAR_CACHE_DIR`.
pub const DEFAULT_CACHE_DIR: &str = "/tmp/scar";
/// Default output prefix inside the input bucket when `SCAR_OUTPUT` is unset.
pub const DEFAULT_OUTPUT_PREFIX: &str = "output/";
/// Default of `SCAR_LOG`.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// One user-facing variable as the README's configuration table documents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VariableDoc {
    /// The variable's name (`SCAR_ENV_<NAME>` for the prefix family).
    pub name: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// The default exactly as the README's default column shows it (backticks ignored).
    pub default: &'static str,
}

/// Every variable a user sets on the function, in README order.
pub const FUNCTION_VARIABLES: &[VariableDoc] = &[
    VariableDoc {
        name: SCAR_IMAGE,
        meaning: "image reference: `alpine:3.20`, `ghcr.io/...`, ECR, `...@sha256:...`, `oci:<dir>[:tag]`, `oci-archive:<path or s3://b/k>`, `docker-archive:<path or s3://b/k>`",
        default: "required",
    },
    VariableDoc {
        name: SCAR_SCRIPT,
        meaning: "script text, run with the image's `/bin/sh`",
        default: "—",
    },
    VariableDoc {
        name: SCAR_SCRIPT_FILE,
        meaning: "script path (e.g. in `/var/task`) or `s3://` URL; without a script the image's Entrypoint and Cmd run",
        default: "—",
    },
    VariableDoc {
        name: SCAR_OUTPUT,
        meaning: "`s3://bucket/prefix` for outputs",
        default: "s3://<input bucket>/output/",
    },
    VariableDoc {
        name: SCAR_TIMEOUT_MARGIN,
        meaning: "seconds kept before the deadline to stop the container and upload",
        default: "10",
    },
    VariableDoc {
        name: SCAR_ENGINE,
        meaning: "`auto`, `namespace`, `preload`",
        default: "auto",
    },
    VariableDoc {
        name: SCAR_PRELOAD_DIR,
        meaning: "directory of the preload engine's `libscar_preload-*.so`",
        default: "preload/ next to bootstrap (the layer's /opt/preload)",
    },
    VariableDoc {
        name: SCAR_PRELOAD_STATIC,
        meaning: "`warn`: a statically linked program runs with the host's view, named in the log and the response's `unconfined`; `refuse`: it is refused and the invocation fails (`Scar.ScriptFailed`)",
        default: "warn",
    },
    VariableDoc {
        name: SCAR_CACHE_DIR,
        meaning: "cache root",
        default: "/tmp/scar",
    },
    VariableDoc {
        name: SCAR_CACHE_MAX_MB,
        meaning: "cap for the cache in MiB",
        default: "what the filesystem of the cache holds",
    },
    VariableDoc {
        name: SCAR_CACHE_STALE_SECONDS,
        meaning: "with a cache shared by sandboxes (EFS): seconds another sandbox's pull of the same image may go without progress before a waiting one pulls on its own",
        default: "30",
    },
    VariableDoc {
        name: SCAR_PULL_POLICY,
        meaning: "`if-not-present`, `always`",
        default: "if-not-present",
    },
    VariableDoc {
        name: SCAR_PREFETCH,
        meaning: "pull during the init phase (`true` or `false`)",
        default: "true",
    },
    VariableDoc {
        name: SCAR_REGISTRY_USERNAME,
        meaning: "registry user name (ECR needs none: the function role is used)",
        default: "anonymous",
    },
    VariableDoc {
        name: SCAR_REGISTRY_PASSWORD,
        meaning: "registry password or token; never passed to the container",
        default: "anonymous",
    },
    VariableDoc {
        name: SCAR_INSECURE_REGISTRIES,
        meaning: "comma list of `host:port` reached over plain HTTP",
        default: "none",
    },
    VariableDoc {
        name: SCAR_PULL_RANGES,
        meaning: "concurrent `Range` requests per blob of 32 MiB or more (a 1 MiB first part, then 8 MiB parts, fed in order); `1`: one stream per blob",
        default: "by memory: 2 under 512 MB, 4 up to 2 GB (and off Lambda), 8 above",
    },
    VariableDoc {
        name: "SCAR_ENV_<NAME>",
        meaning: "sets `<NAME>` in the container",
        default: "—",
    },
    VariableDoc {
        name: SCAR_PASS_AWS_CREDENTIALS,
        meaning: "hand the function's AWS credentials and region to the container",
        default: "false",
    },
    VariableDoc {
        name: SCAR_ALLOW_INVOKE_SCRIPT,
        meaning: "accept `{\"script\": \"<base64>\"}` in a direct invocation",
        default: "false",
    },
    VariableDoc {
        name: SCAR_HTTP_STREAMING,
        meaning: "answer HTTP requests as a stream (up to 200 MB): set it when the Function URL has `InvokeMode: RESPONSE_STREAM`; otherwise answers are buffered (6 MB)",
        default: "false",
    },
    VariableDoc {
        name: SCAR_LOG,
        meaning: "log filter (tracing syntax)",
        default: "info",
    },
    VariableDoc {
        name: SCAR_LOG_FORMAT,
        meaning: "`text` or `json` (for CloudWatch Logs Insights)",
        default: "text",
    },
    VariableDoc {
        name: AWS_ENDPOINT_URL_S3,
        meaning: "standard SDK override for an S3-compatible server; then path-style addressing",
        default: "—",
    },
    VariableDoc {
        name: AWS_ENDPOINT_URL,
        meaning: "standard SDK override for every service; then path-style addressing",
        default: "—",
    },
    VariableDoc {
        name: AWS_LAMBDA_MAX_CONCURRENCY,
        meaning: "set by Lambda on Managed Instances from the function's per-environment maximum concurrency: how many invocations one sandbox serves at once (1 to 1024)",
        default: "1",
    },
];
