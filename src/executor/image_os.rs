//! `ImageOS`: the runner image release a job runs on (`ubuntu22`), which setup actions read to
//! pick prebuilt tools (`ruby/setup-ruby` refuses to run without it). Derived as upstream's act
//! does: from the image's tag when it names a release, else from the job's last `runs-on` label.

/// The value of `ImageOS` for a job in `image` (`None` on the host) with these `runs-on`
/// labels; `None` when neither names anything.
pub fn image_os(image: Option<&str>, runs_on: &[String]) -> Option<String> {
    if let Some(from_tag) = image.and_then(from_image) {
        return Some(from_tag);
    }
    let label = runs_on.iter().rev().find(|label| !label.is_empty())?;
    if label == "ubuntu-latest" {
        // A rolling label names no release; act keeps the value it always gave.
        return Some("ubuntu20".into());
    }
    let without_first_dash = label.replacen('-', "", 1);
    let before_dot = without_first_dash.split('.').next().unwrap_or_default();
    Some(before_dot.to_string())
}

/// `docker.gitea.com/runner-images:ubuntu-24.04` gives `ubuntu24`: a tag (after the last `:`,
/// with no `/` after it, so a registry port is no tag) starting with `ubuntu`, `win` or `macos`,
/// an optional dash, then digits.
fn from_image(image: &str) -> Option<String> {
    let (_, tag) = image.rsplit_once(':')?;
    if tag.contains('/') {
        return None;
    }
    ["ubuntu", "win", "macos"].into_iter().find_map(|family| {
        let rest = tag.strip_prefix(family)?;
        let rest = rest.strip_prefix('-').unwrap_or(rest);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("{family}{digits}"))
    })
}

#[cfg(test)]
mod tests {
    use super::image_os;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn a_release_tag_of_the_image_wins_over_the_labels() {
        let runs_on = labels(&["ubuntu-latest"]);
        for (image, expected) in [
            ("docker.gitea.com/runner-images:ubuntu-24.04", "ubuntu24"),
            (
                "docker.gitea.com/runner-images:ubuntu-22.04-slim",
                "ubuntu22",
            ),
            ("example.com/images:ubuntu22", "ubuntu22"),
            ("example.com/images:win-2022", "win2022"),
            ("example.com/images:macos-14", "macos14"),
        ] {
            assert_eq!(
                image_os(Some(image), &runs_on).as_deref(),
                Some(expected),
                "{image}"
            );
        }
    }

    #[test]
    fn an_image_naming_no_release_leaves_it_to_the_labels() {
        let runs_on = labels(&["self-hosted", "ubuntu-22.04"]);
        for image in [
            "docker.gitea.com/runner-images:ubuntu-latest",
            "node:20-bookworm",
            "catthehacker/ubuntu:act-22.04",
            "registry.local:5000/ubuntu-22",
            "debian",
        ] {
            assert_eq!(
                image_os(Some(image), &runs_on).as_deref(),
                Some("ubuntu22"),
                "{image}"
            );
        }
    }

    #[test]
    fn the_last_label_names_it_and_ubuntu_latest_is_ubuntu20() {
        assert_eq!(
            image_os(None, &labels(&["ubuntu-latest"])).as_deref(),
            Some("ubuntu20")
        );
        assert_eq!(
            image_os(None, &labels(&["linux", "ubuntu-24.04"])).as_deref(),
            Some("ubuntu24")
        );
        assert_eq!(
            image_os(None, &labels(&["ubuntu-24.04", "self-hosted"])).as_deref(),
            Some("selfhosted")
        );
        assert_eq!(image_os(None, &labels(&["", ""])), None);
        assert_eq!(image_os(None, &[]), None);
    }
}
