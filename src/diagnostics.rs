//! User mistakes found while reading or compiling objects.
//!
//! A [`Diagnostic`] names the object it concerns, a CamelCase reason (it becomes the Kubernetes
//! Event reason in cluster mode) and a human message. Diagnostics are values: `compile` returns
//! them, the sources log them, and the kube source turns them into Events.

use std::fmt;

/// Which object a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Kubernetes kind (`Ingress`, `Service`, ...) or `File` for a manifest file.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects and files.
    pub namespace: String,
    /// Object name, or the file path for `File`.
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    pub fn ingress(namespace: &str, name: &str) -> Self {
        Self::new("Ingress", namespace, name)
    }

    pub fn file(path: &str) -> Self {
        Self::new("File", "", path)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// How serious a diagnostic is. `Rejected` means the object was left out of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The object is served, maybe degraded (e.g. a route answering 503).
    Warning,
    /// The object was left out whole.
    Rejected,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "Warning",
            Severity::Rejected => "Rejected",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub object: ObjectRef,
    pub severity: Severity,
    /// CamelCase reason, stable: dashboards and tests key on it.
    pub reason: &'static str,
    pub message: String,
}

impl Diagnostic {
    pub fn warning(object: ObjectRef, reason: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            object,
            severity: Severity::Warning,
            reason,
            message: message.into(),
        }
    }

    pub fn rejected(object: ObjectRef, reason: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            object,
            severity: Severity::Rejected,
            reason,
            message: message.into(),
        }
    }

    /// Emit this diagnostic as one structured log line.
    pub fn log(&self) {
        tracing::warn!(
            object = %self.object,
            severity = self.severity.as_str(),
            reason = self.reason,
            message = %self.message,
            "diagnostic"
        );
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}",
            self.severity.as_str(),
            self.object,
            self.reason,
            self.message
        )
    }
}
