//! Runner labels: `name`, `name:host`, `name:docker://image`, and opaque labels whose schema is
//! unknown (`pool:e57e…`), which behave as host labels and round-trip unchanged. A label with an
//! empty name (`:host`) or a URL-shaped unknown scheme (`ubuntu:dokcer://node:18`) is refused:
//! upstream would declare either to Gitea, where no `runs-on` can ever use it as meant.
//! Register and Declare send only [`Label::name`]; the `.runner` file keeps [`Label`]'s full
//! `Display` form. Pure; imports nothing outside `std`.

use std::fmt;

/// Where a job whose `runs-on` matches this label runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LabelSchema {
    /// Directly on the runner's host.
    Host,
    /// In a Docker container made from the label's image.
    Docker,
}

/// One parsed runner label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    /// What `runs-on` matches and what Register/Declare send.
    pub name: String,
    pub schema: LabelSchema,
    /// The schema's argument, kept verbatim: for `docker` it still starts with `//`.
    pub arg: String,
    /// The schema was unknown, so the whole input became the name (upstream since v2.1.0).
    pub opaque: bool,
}

/// Why a label does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The whole label is empty (skipped with a warning, as upstream does).
    #[error("empty label")]
    Empty,
    /// Nothing before the first colon (`:host`, `:docker://node:18`).
    #[error("the label has an empty name (write `name:{schema}`)")]
    EmptyName { schema: String },
    /// `name:scheme://…` with a scheme other than `docker` (a typo such as `dokcer`).
    #[error("unknown scheme `{scheme}` (valid: `name`, `name:host`, `name:docker://image`)")]
    UnknownScheme { scheme: String },
}

impl Label {
    /// Parses `name[:schema[:arg]]`, splitting on the first two colons.
    ///
    /// ```
    /// use act_runner::config::{Label, LabelSchema};
    /// let label = Label::parse("ubuntu:docker://node:18").unwrap();
    /// assert_eq!((label.name.as_str(), label.schema), ("ubuntu", LabelSchema::Docker));
    /// assert_eq!(label.docker_image(), Some("node:18"));
    /// ```
    pub fn parse(input: &str) -> Result<Label, LabelError> {
        if input.is_empty() {
            return Err(LabelError::Empty);
        }
        let mut parts = input.splitn(3, ':');
        let name = parts.next().unwrap_or_default();
        let schema = parts.next();
        let arg = parts.next().unwrap_or_default();
        if name.is_empty() {
            return Err(LabelError::EmptyName {
                schema: schema.unwrap_or_default().to_owned(),
            });
        }
        let schema = match schema {
            None | Some("host") => LabelSchema::Host,
            Some("docker") => LabelSchema::Docker,
            // `scheme://…` is where a docker label's scheme belongs: any other is a mistake.
            Some(scheme) if arg.starts_with("//") => {
                return Err(LabelError::UnknownScheme {
                    scheme: scheme.to_owned(),
                });
            }
            Some(_) => {
                return Ok(Label {
                    name: input.to_owned(),
                    schema: LabelSchema::Host,
                    arg: String::new(),
                    opaque: true,
                });
            }
        };
        Ok(Label {
            name: name.to_owned(),
            schema,
            arg: arg.to_owned(),
            opaque: false,
        })
    }

    /// The image of a docker label (its argument without the leading `//`), if it names one.
    pub fn docker_image(&self) -> Option<&str> {
        if self.schema != LabelSchema::Docker {
            return None;
        }
        let image = self.arg.strip_prefix("//").unwrap_or(&self.arg);
        (!image.is_empty()).then_some(image)
    }
}

impl fmt::Display for Label {
    /// The full form stored in `.runner`: the name alone for opaque labels, otherwise
    /// `name:schema` plus `:arg` when there is one (so `bare` is written back as `bare:host`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.opaque {
            return f.write_str(&self.name);
        }
        let schema = match self.schema {
            LabelSchema::Host => "host",
            LabelSchema::Docker => "docker",
        };
        write!(f, "{}:{schema}", self.name)?;
        if !self.arg.is_empty() {
            write!(f, ":{}", self.arg)?;
        }
        Ok(())
    }
}

/// Where a job runs, as picked from the labels for its `runs-on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    Host,
    Docker { image: String },
}

/// The names Register and Declare send (never the `:docker://…` part).
pub fn label_names(labels: &[Label]) -> Vec<String> {
    labels.iter().map(|label| label.name.clone()).collect()
}

/// True if any label runs jobs in Docker.
pub fn labels_require_docker(labels: &[Label]) -> bool {
    labels
        .iter()
        .any(|label| label.schema == LabelSchema::Docker)
}

/// The platform of the first `runs-on` entry that matches a label name; a docker label without
/// an image counts as no match (upstream's `PickPlatform`).
pub fn pick_platform<'a>(
    labels: &[Label],
    runs_on: impl IntoIterator<Item = &'a str>,
) -> Option<Platform> {
    runs_on.into_iter().find_map(|wanted| {
        let label = labels.iter().rev().find(|label| label.name == wanted)?;
        match label.schema {
            LabelSchema::Host => Some(Platform::Host),
            LabelSchema::Docker => label.docker_image().map(|image| Platform::Docker {
                image: image.to_owned(),
            }),
        }
    })
}

/// Upstream's default labels, used by `register` when neither the flags nor the config name any.
pub const DEFAULT_LABELS: [&str; 3] = [
    "ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest",
    "ubuntu-24.04:docker://docker.gitea.com/runner-images:ubuntu-24.04",
    "ubuntu-22.04:docker://docker.gitea.com/runner-images:ubuntu-22.04",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, name: &str, schema: LabelSchema, arg: &str, opaque: bool, shown: &str) {
        let label = Label::parse(input).unwrap();
        let expected = Label {
            name: name.to_owned(),
            schema,
            arg: arg.to_owned(),
            opaque,
        };
        assert_eq!(label, expected, "{input}");
        assert_eq!(label.to_string(), shown, "{input}");
        assert_eq!(
            Label::parse(shown).unwrap(),
            label,
            "{shown} must round-trip"
        );
    }

    #[test]
    fn parse_table() {
        use LabelSchema::{Docker, Host};
        check("name", "name", Host, "", false, "name:host");
        check("name:host", "name", Host, "", false, "name:host");
        check(
            "name:docker://image",
            "name",
            Docker,
            "//image",
            false,
            "name:docker://image",
        );
        check(
            "ubuntu:docker://node:18",
            "ubuntu",
            Docker,
            "//node:18",
            false,
            "ubuntu:docker://node:18",
        );
        check(
            "ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest",
            "ubuntu-latest",
            Docker,
            "//docker.gitea.com/runner-images:ubuntu-latest",
            false,
            "ubuntu-latest:docker://docker.gitea.com/runner-images:ubuntu-latest",
        );
        check("pool:e57e12", "pool:e57e12", Host, "", true, "pool:e57e12");
        check(
            "ubuntu:vm:ubuntu-18.04",
            "ubuntu:vm:ubuntu-18.04",
            Host,
            "",
            true,
            "ubuntu:vm:ubuntu-18.04",
        );
        check("name:docker", "name", Docker, "", false, "name:docker");
        // Spaces are kept: `host ` is an unknown schema, so the label is opaque.
        check(" a:host ", " a:host ", Host, "", true, " a:host ");
        assert_eq!(Label::parse(""), Err(LabelError::Empty));
    }

    #[test]
    fn an_empty_name_or_an_unknown_url_scheme_is_refused() {
        for (input, message) in [
            (":host", "the label has an empty name (write `name:host`)"),
            (":", "the label has an empty name"),
            (":docker://node:18", "empty name (write `name:docker`)"),
            (
                "ubuntu:dokcer://node:18",
                "unknown scheme `dokcer` (valid: `name`, `name:host`, `name:docker://image`)",
            ),
            ("vm:podman://img", "unknown scheme `podman`"),
        ] {
            let error = Label::parse(input).unwrap_err();
            assert!(error.to_string().contains(message), "{input}: {error}");
        }
    }

    #[test]
    fn register_and_declare_send_bare_names() {
        let labels: Vec<Label> = ["a", "b:host", "c:docker://alpine:3", "pool:x1"]
            .into_iter()
            .map(|text| Label::parse(text).unwrap())
            .collect();
        assert_eq!(label_names(&labels), ["a", "b", "c", "pool:x1"]);
        assert!(labels_require_docker(&labels));
        assert!(!labels_require_docker(&labels[..2]));
    }

    #[test]
    fn pick_platform_takes_the_first_matching_runs_on_entry() {
        let labels: Vec<Label> = ["self:host", "ubuntu:docker://node:18", "empty:docker"]
            .into_iter()
            .map(|text| Label::parse(text).unwrap())
            .collect();
        assert_eq!(
            pick_platform(&labels, ["nope", "ubuntu", "self"]),
            Some(Platform::Docker {
                image: "node:18".into()
            })
        );
        assert_eq!(
            pick_platform(&labels, ["self", "ubuntu"]),
            Some(Platform::Host)
        );
        assert_eq!(pick_platform(&labels, ["empty"]), None);
        assert_eq!(pick_platform(&labels, ["missing"]), None);
    }
}
