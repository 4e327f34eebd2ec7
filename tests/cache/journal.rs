//! The fields of the cache's log lines, as the journal gets them: `tracing-journald` turns each
//! field name into an upper-case journal field (`cache_key` → `CACHE_KEY`), so
//! `journalctl REPOSITORY=owner/repo CACHE_KEY=deps-v1` finds an entry's save and its removal.
//! The system test under real systemd (`packaging/nspawn/systemd-system-test.sh`) checks one
//! such entry in the real journal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt as _;

use super::*;

/// One event: its message and its other fields by journal name.
type Event = (String, BTreeMap<String, String>);

/// Records every event's fields.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Event>>>);

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(journal_name(field.name()), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(journal_name(field.name()), value.to_owned());
    }
}

/// The journal field of a tracing field, as `tracing-journald` names it without a prefix.
fn journal_name(name: &str) -> String {
    name.replace('.', "_")
        .trim_start_matches('_')
        .chars()
        .filter(|c| *c == '_' || c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("MESSAGE").unwrap_or_default();
        act_runner::sync::lock(&self.0).push((message, fields.0));
    }
}

impl Capture {
    fn find(&self, message: &str) -> BTreeMap<String, String> {
        let events = act_runner::sync::lock(&self.0);
        events
            .iter()
            .find(|(text, _)| text == message)
            .map(|(_, fields)| fields.clone())
            .unwrap_or_else(|| panic!("no {message:?} line among {:#?}", *events))
    }
}

// A current-thread runtime (the default): the server's tasks run on this thread, where the
// capturing subscriber is the default.
#[tokio::test]
async fn a_commit_and_a_removal_log_the_entry_as_journal_fields() {
    let capture = Capture::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    // Another test's thread may register a callsite while this default is being set, caching
    // an interest computed without it; recompute once every callsite is registered.
    tracing::callsite::rebuild_interest_cache();
    let harness = Harness::start().await;
    harness.grant("token-journal-1", REPO, MAIN).await;
    let id = harness
        .save("token-journal-1", "journal-key", b"journal bytes", 5)
        .await;

    let committed = capture.find("cache entry committed");
    let expected = |reason: Option<&str>| {
        let mut fields: BTreeMap<String, String> = [
            ("REPOSITORY", REPO.to_owned()),
            ("CACHE_REF", MAIN.to_owned()),
            ("CACHE_KEY", "journal-key".to_owned()),
            ("CACHE_ID", id.to_string()),
            ("CACHE_SIZE", "13".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        if let Some(reason) = reason {
            fields.insert("CACHE_REASON".into(), reason.into());
        }
        fields
    };
    assert_eq!(committed, expected(None));

    tracing::callsite::rebuild_interest_cache();
    let removed = harness
        .server
        .delete(act_runner::cache::DeleteSelector::Repository(REPO.into()))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        capture.find("cache entry removed"),
        expected(Some("deleted"))
    );
}
