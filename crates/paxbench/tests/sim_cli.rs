//! `paxbench sim` end to end: output format, exit codes, replaying a bug, the self-test.

use std::process::{Command, Output};

fn paxbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paxbench"))
        .args(args)
        .output()
        .expect("paxbench runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_clean_sweep_ends_with_the_tally_and_exits_zero() {
    let out = paxbench(&[
        "sim",
        "--protocol",
        "multi-paxos",
        "--nodes",
        "3",
        "--seeds",
        "0..5",
        "--faults",
        "none",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.lines().last(), Some("5 passed, 0 failed"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
}

#[test]
fn a_failing_seed_prints_seed_checker_and_trace_and_exits_nonzero() {
    let out = paxbench(&[
        "sim",
        "--faults",
        "lossy",
        "--bug",
        "commit-without-quorum",
        "--seeds",
        "0..2",
        "--trace",
        "5",
    ]);
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("FAIL seed 0 (multi-paxos, 3 nodes, faults lossy): executed-logs-agree"),
        "{text}"
    );
    assert!(text.contains("last 5 events:"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 2 failed"), "{text}");
}

#[test]
fn the_self_test_catches_every_bug_variant() {
    let out = paxbench(&["sim", "--self-test"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    for bug in [
        "ForgetPromiseOnRestart",
        "AcceptLowerBallot",
        "SkipRecovery",
        "CommitWithoutQuorum",
        "ResurrectExpiredSessions",
        "LocalReads",
        "AckBeforeDurable",
        "ReadsAfterLeaseExpiry",
        "PromiseInsideLease",
        "LeaseWithoutDriftMargin",
        "LearnerVotes",
        "ReconfigNextSlot",
    ] {
        assert!(
            text.contains(&format!("caught {bug}")),
            "{bug} missing:\n{text}"
        );
    }
    assert_eq!(text.lines().last(), Some("12 passed, 0 failed"), "{text}");
}

#[test]
fn bad_arguments_are_errors() {
    for args in [
        &["sim", "--seeds", "5..2"][..],
        &["sim", "--seeds", "x"][..],
        &["sim", "--protocol", "unreplicated", "--nodes", "3"][..],
        &["sim", "--faults", "flaky"][..],
    ] {
        let out = paxbench(args);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(!out.stderr.is_empty(), "{args:?} should say why");
    }
}
