//! A function directory: `template.yaml` (the SAM template that deploys it) and `script.sh`.
//!
//! The function's environment (`SCAR_IMAGE`, `SCAR_SCRIPT_FILE`, `SCAR_OUTPUT`, ...) is read from
//! the template itself, so `sam deploy` and `scar local` never disagree. Values CloudFormation
//! computes at deploy time (`!GetAtt`, `!Sub` of a resource) cannot be known here; they are
//! listed as unresolved and left out. `!Ref`/`!Sub` of a parameter use the parameter's
//! `Default`, and pseudo parameters (`AWS::Region`, ...) get local values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

/// The template file name inside a function directory.
pub const TEMPLATE: &str = "template.yaml";

/// Resource types that are Lambda functions.
const FUNCTION_TYPES: [&str; 2] = ["AWS::Serverless::Function", "AWS::Lambda::Function"];

/// Lambda's defaults when the template says nothing.
const DEFAULT_TIMEOUT_S: u64 = 3;
const DEFAULT_MEMORY_MB: u64 = 128;
const DEFAULT_EPHEMERAL_MB: u64 = 512;

/// What `scar local` needs to know about one function of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    /// The function directory (absolute): `LAMBDA_TASK_ROOT` and the bootstrap's working directory.
    pub dir: PathBuf,
    /// Logical id of the function resource in the template.
    pub logical_id: String,
    /// `FunctionName` when it is a literal, else the logical id.
    pub name: String,
    /// Environment variables whose values are known here, in template order (Globals first).
    pub env: Vec<(String, String)>,
    /// Variables CloudFormation computes at deploy time: (name, how the template writes it).
    pub unresolved: Vec<(String, String)>,
    /// `Timeout` in seconds.
    pub timeout_s: u64,
    /// `MemorySize` in MB.
    pub memory_mb: u64,
    /// `EphemeralStorage.Size` in MB (the size of `/tmp`).
    pub ephemeral_mb: u64,
    /// `Handler`, passed as `_HANDLER`.
    pub handler: String,
    /// `Runtime`, for a warning when it is not a custom runtime.
    pub runtime: Option<String>,
}

/// Why a function directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The directory or its template cannot be read.
    #[error(
        "{path}: {source} (a function directory holds template.yaml and script.sh, e.g. examples/demo)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The template is not YAML.
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        /// The template.
        path: PathBuf,
        /// The parser's error.
        source: serde_norway::Error,
    },
    /// The template declares no Lambda function.
    #[error("{path} declares no AWS::Serverless::Function or AWS::Lambda::Function resource")]
    NoFunction {
        /// The template.
        path: PathBuf,
    },
    /// Several functions and none chosen.
    #[error("{path} declares several functions ({ids}): choose one with --function-id")]
    Ambiguous {
        /// The template.
        path: PathBuf,
        /// The logical ids.
        ids: String,
    },
    /// The chosen logical id is not a function.
    #[error("{path} has no function named {id} (functions: {ids})")]
    UnknownId {
        /// The template.
        path: PathBuf,
        /// The asked id.
        id: String,
        /// The logical ids.
        ids: String,
    },
    /// A property has a value of the wrong kind.
    #[error("{path}: {property} of {id} must be {expected}")]
    Property {
        /// The template.
        path: PathBuf,
        /// The resource.
        id: String,
        /// The property, e.g. `Timeout`.
        property: &'static str,
        /// What it must be.
        expected: &'static str,
    },
}

/// Local values for CloudFormation's pseudo parameters.
fn pseudo_parameter(name: &str, region: &str) -> Option<String> {
    Some(match name {
        "AWS::Region" => region.to_owned(),
        "AWS::AccountId" => "000000000000".to_owned(),
        "AWS::StackName" => "scar-local".to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::URLSuffix" => "amazonaws.com".to_owned(),
        _ => return None,
    })
}

/// Resolves the values a template's environment may hold.
struct Resolver<'a> {
    parameters: BTreeMap<String, String>,
    region: &'a str,
}

impl Resolver<'_> {
    fn reference(&self, name: &str) -> Option<String> {
        self.parameters
            .get(name)
            .cloned()
            .or_else(|| pseudo_parameter(name, self.region))
    }

    /// `Fn::Sub` with `${Name}` placeholders and `${!Literal}` escapes.
    fn substitute(&self, text: &str, vars: &BTreeMap<String, String>) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}')?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else {
                out.push_str(&vars.get(name).cloned().or_else(|| self.reference(name))?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn intrinsic(&self, function: &str, argument: &Value) -> Option<String> {
        match (function, argument) {
            ("Ref", Value::String(name)) => self.reference(name),
            ("Sub", Value::String(text)) => self.substitute(text, &BTreeMap::new()),
            ("Sub", Value::Sequence(items)) => match items.as_slice() {
                [Value::String(text), Value::Mapping(vars)] => {
                    let mut resolved = BTreeMap::new();
                    for (key, value) in vars {
                        resolved.insert(key.as_str()?.to_owned(), self.value(value)?);
                    }
                    self.substitute(text, &resolved)
                }
                [Value::String(text)] => self.substitute(text, &BTreeMap::new()),
                _ => None,
            },
            ("Join", Value::Sequence(items)) => match items.as_slice() {
                [Value::String(delimiter), Value::Sequence(parts)] => {
                    let parts: Option<Vec<String>> = parts.iter().map(|p| self.value(p)).collect();
                    Some(parts?.join(delimiter))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// The value of a scalar or an intrinsic function, `None` when only CloudFormation knows it.
    fn value(&self, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            // Short form: `!Ref X`, `!Sub "..."`.
            Value::Tagged(tagged) => {
                let tag = tagged.tag.to_string();
                self.intrinsic(tag.trim_start_matches('!'), &tagged.value)
            }
            // Long form: `{"Fn::Sub": "..."}`, `{"Ref": "X"}`.
            Value::Mapping(map) if map.len() == 1 => {
                let (key, argument) = map.iter().next()?;
                let key = key.as_str()?;
                self.intrinsic(key.strip_prefix("Fn::").unwrap_or(key), argument)
            }
            _ => None,
        }
    }
}

/// How the template writes a value it cannot resolve, for messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Tagged(tagged) => {
            let inner = serde_norway::to_string(&tagged.value).unwrap_or_default();
            format!("{} {}", tagged.tag, inner.trim())
        }
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .replace('\n', " "),
    }
}

fn get<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.as_mapping()?.get(key)
}

/// Loads `dir/template.yaml` and picks its function (`function_id`, or the only one).
pub fn load(
    dir: &Path,
    function_id: Option<&str>,
    region: &str,
) -> Result<Function, FunctionError> {
    let dir = dir.canonicalize().map_err(|source| FunctionError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(TEMPLATE);
    let text = std::fs::read_to_string(&path).map_err(|source| FunctionError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&text, &path, &dir, function_id, region)
}

/// Reads the function out of the template text.
pub fn parse(
    text: &str,
    path: &Path,
    dir: &Path,
    function_id: Option<&str>,
    region: &str,
) -> Result<Function, FunctionError> {
    let template: Value = serde_norway::from_str(text).map_err(|source| FunctionError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;

    let mut parameters = BTreeMap::new();
    if let Some(Value::Mapping(params)) = get(&template, "Parameters") {
        for (name, spec) in params {
            let default = get(spec, "Default").and_then(|d| {
                Resolver {
                    parameters: BTreeMap::new(),
                    region,
                }
                .value(d)
            });
            if let (Some(name), Some(default)) = (name.as_str(), default) {
                parameters.insert(name.to_owned(), default);
            }
        }
    }
    let resolver = Resolver { parameters, region };

    let mut functions = Vec::new();
    if let Some(Value::Mapping(resources)) = get(&template, "Resources") {
        for (id, resource) in resources {
            let kind = get(resource, "Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let (Some(id), true) = (id.as_str(), FUNCTION_TYPES.contains(&kind)) {
                functions.push((id.to_owned(), resource));
            }
        }
    }
    let ids = functions
        .iter()
        .map(|(id, _)| id.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let (logical_id, resource) = match (function_id, functions.len()) {
        (_, 0) => {
            return Err(FunctionError::NoFunction {
                path: path.to_path_buf(),
            });
        }
        (Some(wanted), _) => functions
            .iter()
            .find(|(id, _)| id == wanted)
            .ok_or_else(|| FunctionError::UnknownId {
                path: path.to_path_buf(),
                id: wanted.to_owned(),
                ids: ids.clone(),
            })?,
        (None, 1) => &functions[0],
        (None, _) => {
            return Err(FunctionError::Ambiguous {
                path: path.to_path_buf(),
                ids,
            });
        }
    };
    let properties = get(resource, "Properties").cloned().unwrap_or(Value::Null);
    let globals = get(&template, "Globals")
        .and_then(|g| get(g, "Function"))
        .cloned()
        .unwrap_or(Value::Null);
    // A property of the function, else of `Globals.Function`.
    let property = |name: &str| get(&properties, name).or_else(|| get(&globals, name));
    let number =
        |name: &'static str, default: u64| -> Result<u64, FunctionError> {
            match property(name) {
                None => Ok(default),
                Some(value) => resolver.value(value).and_then(|v| v.parse().ok()).ok_or(
                    FunctionError::Property {
                        path: path.to_path_buf(),
                        id: logical_id.clone(),
                        property: name,
                        expected: "a whole number",
                    },
                ),
            }
        };
    let timeout_s = number("Timeout", DEFAULT_TIMEOUT_S)?;
    let memory_mb = number("MemorySize", DEFAULT_MEMORY_MB)?;
    let ephemeral_mb =
        match property("EphemeralStorage").and_then(|e| get(e, "Size")) {
            None => DEFAULT_EPHEMERAL_MB,
            Some(size) => resolver.value(size).and_then(|v| v.parse().ok()).ok_or(
                FunctionError::Property {
                    path: path.to_path_buf(),
                    id: logical_id.clone(),
                    property: "EphemeralStorage.Size",
                    expected: "a whole number of MB",
                },
            )?,
        };

    let mut env: Vec<(String, String)> = Vec::new();
    let mut unresolved = Vec::new();
    for source in [&globals, &properties] {
        let Some(Value::Mapping(vars)) =
            get(source, "Environment").and_then(|e| get(e, "Variables"))
        else {
            continue;
        };
        for (name, value) in vars {
            let Some(name) = name.as_str() else { continue };
            env.retain(|(existing, _)| existing != name);
            unresolved.retain(|(existing, _): &(String, String)| existing != name);
            match resolver.value(value) {
                Some(resolved) => env.push((name.to_owned(), resolved)),
                None => unresolved.push((name.to_owned(), describe(value))),
            }
        }
    }

    let name = property("FunctionName")
        .and_then(|n| resolver.value(n))
        .unwrap_or_else(|| logical_id.clone());
    Ok(Function {
        dir: dir.to_path_buf(),
        logical_id: logical_id.clone(),
        name,
        env,
        unresolved,
        timeout_s,
        memory_mb,
        ephemeral_mb,
        handler: property("Handler")
            .and_then(|h| resolver.value(h))
            .unwrap_or_else(|| "script.sh".to_owned()),
        runtime: property("Runtime").and_then(|r| resolver.value(r)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE_TEXT: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  ScarLayerArn:
    Type: String
  ImageName:
    Type: String
    Default: docker.io/jrottenberg/ffmpeg:4.4-alpine
Globals:
  Function:
    Timeout: 300
    Environment:
      Variables:
        SCAR_LOG: debug
Resources:
  InputBucket:
    Type: AWS::S3::Bucket
  Grayify:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: provided.al2023
      Handler: script.sh
      MemorySize: 2048
      EphemeralStorage:
        Size: 2048
      Layers: [!Ref ScarLayerArn]
      Environment:
        Variables:
          SCAR_IMAGE: !Ref ImageName
          SCAR_SCRIPT_FILE: script.sh
          SCAR_TIMEOUT_MARGIN: 15
          SCAR_OUTPUT: !Sub "s3://${OutputBucket}/grayify/"
          SCAR_REGION_NOTE: !Sub "${AWS::Region}-${!Literal}"
          SCAR_LOG: info
          SCAR_JOINED: { "Fn::Join": ["-", ["a", !Ref ImageName]] }
          SCAR_ARN: !GetAtt InputBucket.Arn
"#;

    fn parsed() -> Function {
        parse(
            TEMPLATE_TEXT,
            Path::new("template.yaml"),
            Path::new("/fn"),
            None,
            "eu-west-1",
        )
        .unwrap()
    }

    fn env(function: &Function, name: &str) -> Option<String> {
        function
            .env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn literal_values_and_parameter_references_are_read_from_the_template() {
        let function = parsed();
        assert_eq!(
            env(&function, "SCAR_IMAGE").as_deref(),
            Some("docker.io/jrottenberg/ffmpeg:4.4-alpine")
        );
        assert_eq!(
            env(&function, "SCAR_SCRIPT_FILE").as_deref(),
            Some("script.sh")
        );
        assert_eq!(env(&function, "SCAR_TIMEOUT_MARGIN").as_deref(), Some("15"));
        assert_eq!(
            env(&function, "SCAR_JOINED").as_deref(),
            Some("a-docker.io/jrottenberg/ffmpeg:4.4-alpine")
        );
    }

    #[test]
    fn sub_uses_pseudo_parameters_and_keeps_escaped_placeholders() {
        assert_eq!(
            env(&parsed(), "SCAR_REGION_NOTE").as_deref(),
            Some("eu-west-1-${Literal}")
        );
    }

    #[test]
    fn values_only_cloudformation_knows_are_listed_as_unresolved() {
        let function = parsed();
        assert_eq!(env(&function, "SCAR_OUTPUT"), None);
        let names: Vec<_> = function
            .unresolved
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["SCAR_OUTPUT", "SCAR_ARN"]);
        assert!(
            function.unresolved[0].1.contains("${OutputBucket}"),
            "{:?}",
            function.unresolved
        );
        assert!(
            function.unresolved[1].1.starts_with("!GetAtt"),
            "{:?}",
            function.unresolved
        );
    }

    #[test]
    fn function_values_override_globals_and_defaults_fill_the_rest() {
        let function = parsed();
        assert_eq!(env(&function, "SCAR_LOG").as_deref(), Some("info"));
        assert_eq!(
            function.env.iter().filter(|(n, _)| n == "SCAR_LOG").count(),
            1
        );
        assert_eq!(
            (
                function.timeout_s,
                function.memory_mb,
                function.ephemeral_mb
            ),
            (300, 2048, 2048)
        );
        assert_eq!(function.logical_id, "Grayify");
        assert_eq!(function.runtime.as_deref(), Some("provided.al2023"));
    }

    #[test]
    fn a_template_without_functions_is_refused_with_its_path() {
        let err = parse(
            "Resources: {}\n",
            Path::new("t.yaml"),
            Path::new("/"),
            None,
            "us-east-1",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("t.yaml declares no AWS::Serverless::Function"),
            "{err}"
        );
    }

    #[test]
    fn several_functions_need_a_choice() {
        let text = "Resources:\n  A: {Type: AWS::Serverless::Function}\n  B: {Type: AWS::Lambda::Function}\n";
        let err = parse(text, Path::new("t.yaml"), Path::new("/"), None, "us-east-1").unwrap_err();
        assert!(
            err.to_string().contains("several functions (A, B)"),
            "{err}"
        );
        let b = parse(
            text,
            Path::new("t.yaml"),
            Path::new("/"),
            Some("B"),
            "us-east-1",
        )
        .unwrap();
        assert_eq!(
            (b.logical_id.as_str(), b.timeout_s, b.ephemeral_mb),
            ("B", 3, 512)
        );
    }

    #[test]
    fn a_timeout_that_is_not_a_number_names_the_property() {
        let text = "Resources:\n  A:\n    Type: AWS::Serverless::Function\n    Properties: {Timeout: soon}\n";
        let err = parse(text, Path::new("t.yaml"), Path::new("/"), None, "us-east-1").unwrap_err();
        assert!(
            err.to_string()
                .contains("Timeout of A must be a whole number"),
            "{err}"
        );
    }

    #[test]
    fn broken_yaml_is_reported_with_the_file() {
        let err = parse(
            "Resources: [\n",
            Path::new("bad.yaml"),
            Path::new("/"),
            None,
            "us-east-1",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("bad.yaml is not valid YAML"),
            "{err}"
        );
    }
}
