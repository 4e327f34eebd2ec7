//! D-Bus falls back to the plain behaviour without a bus. The logind inhibitor and the drain on
//! PrepareForShutdown, with the real daemon against a real logind, are checked under systemd in
//! `tests/steps.d/80-systemd-system.sh`.

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
