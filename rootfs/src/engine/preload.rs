//! The preload engine: the image's own dynamic loader plus the path-mapping `LD_PRELOAD`
//! library, for hosts that refuse user namespaces (AWS Lambda).
