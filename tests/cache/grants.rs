//! The grant endpoints of a shared server, through [`RemoteGrants`] as a runner uses them, and
//! the counters the metrics room reads.

use act_runner::cache::{CacheError, Op, Outcome, RemoteGrants};

use super::*;

fn feature_grant(token: &str) -> Grant {
    grant_for(token, REPO, FEATURE)
}

#[tokio::test]
async fn a_remote_grant_lets_a_token_in_until_it_is_revoked() {
    let harness = Harness::start().await;
    let remote = RemoteGrants::new(&harness.url, Secret::new("external-secret-for-tests")).unwrap();
    remote.grant(feature_grant("token-remote-1")).await.unwrap();
    harness.save("token-remote-1", "remote", b"bytes", 5).await;
    // The grant carried the ref: the entry belongs to the feature branch.
    assert_eq!(harness.server.list(None).await.unwrap()[0].scope, FEATURE);

    remote.revoke(&Secret::new("token-remote-1")).await.unwrap();
    let (status, _) = harness.lookup("token-remote-1", &["remote"], VERSION).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_remote_grant_lapses_after_its_lifetime_when_no_revoke_comes() {
    let harness = Harness::start().await;
    let remote = RemoteGrants::new(&harness.url, Secret::new("external-secret-for-tests")).unwrap();
    let mut grant = feature_grant("token-remote-2");
    grant.lifetime = Duration::from_secs(1);
    remote.grant(grant).await.unwrap();
    let (status, _) = harness.lookup("token-remote-2", &["any"], VERSION).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = harness.lookup("token-remote-2", &["any"], VERSION).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(harness.server.grants().is_empty());
}

#[tokio::test]
async fn a_wrong_external_secret_is_refused_and_names_no_secret() {
    let harness = Harness::start().await;
    let remote = RemoteGrants::new(&harness.url, Secret::new("not-the-secret")).unwrap();
    let err = remote
        .grant(feature_grant("token-remote-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Remote { .. }), "{err}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("401"), "{shown}");
    assert!(
        !shown.contains("not-the-secret") && !shown.contains("token-remote-1"),
        "{shown}"
    );
    assert!(harness.server.grants().is_empty());
}

#[tokio::test]
async fn without_an_external_secret_there_are_no_grant_endpoints() {
    let harness = Harness::start_with(|settings| settings.external_secret = None).await;
    let remote = RemoteGrants::new(&harness.url, Secret::new("anything-at-all")).unwrap();
    let err = remote
        .grant(feature_grant("token-remote-1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[tokio::test]
async fn requests_are_counted_by_operation_and_outcome() {
    let harness = Harness::start_on_main().await;
    harness.save("token-main-1", "counted", b"abcdef", 3).await;
    assert!(
        harness
            .restore("token-main-1", &["counted"])
            .await
            .is_some()
    );
    assert!(harness.restore("token-main-1", &["absent"]).await.is_none());
    let _ = harness.lookup("token-nobody", &["counted"], VERSION).await;
    let count = |op: Op, outcome: Outcome| {
        harness
            .server
            .stats()
            .requests
            .iter()
            .find(|(o, r, _)| *o == op && *r == outcome)
            .map_or(0, |(_, _, n)| *n)
    };
    assert_eq!(count(Op::Reserve, Outcome::Ok), 1);
    assert_eq!(count(Op::Upload, Outcome::Ok), 2);
    assert_eq!(count(Op::Commit, Outcome::Ok), 1);
    assert_eq!(count(Op::Lookup, Outcome::Hit), 1);
    assert_eq!(count(Op::Lookup, Outcome::Miss), 1);
    assert_eq!(count(Op::Lookup, Outcome::Denied), 1);
    assert_eq!(count(Op::Download, Outcome::Ok), 1);
}
