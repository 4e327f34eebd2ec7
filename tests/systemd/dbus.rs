//! D-Bus falls back to the plain behaviour without a bus. Nothing checks the logind inhibitor
//! against a real logind yet: the daemon does not take it (issue 6, D-Bus).

use act_runner::systemd::dbus::SystemBus;

use super::LIMIT;

#[tokio::test]
async fn without_a_bus_the_features_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("unix:path={}", dir.path().join("no-bus").display());
    let bus = tokio::time::timeout(LIMIT, SystemBus::connect_to(&address))
        .await
        .unwrap();
    assert!(bus.is_none());
    let malformed = tokio::time::timeout(LIMIT, SystemBus::connect_to("not an address"))
        .await
        .unwrap();
    assert!(malformed.is_none());
}
