//! Names and paths as Docker sees them: container names it accepts, paths inside the job container.

/// A container name Docker accepts: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub(super) fn container_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        name.insert(0, 'x');
    }
    name
}

/// Relative paths are relative to the workspace.
pub(super) fn resolve_path(workspace: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{}", workspace.trim_end_matches('/'), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_are_made_acceptable_to_docker() {
        assert_eq!(
            container_name("GITEA-ACTIONS-TASK-7_WORKFLOW-ci.yml_JOB-build"),
            "GITEA-ACTIONS-TASK-7_WORKFLOW-ci.yml_JOB-build"
        );
        assert_eq!(container_name("wf/job name"), "wf-job-name");
        assert_eq!(container_name("_x"), "x_x");
    }

    #[test]
    fn relative_paths_resolve_against_the_workspace() {
        assert_eq!(resolve_path("/workspace/o/r/", "a/b"), "/workspace/o/r/a/b");
        assert_eq!(resolve_path("/workspace/o/r", "/tmp/x"), "/tmp/x");
    }
}
