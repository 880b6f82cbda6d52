//! `--bwlimit`: the rate is parsed like `-c`, refused when it is 0 or not a
//! size, negotiated (the lower of the client's and the server's wins),
//! and a capped transfer arrives whole both ways. That the pacer holds
//! the rate is tested on tokio's paused clock (`session::pace`); here only
//! a lower bound on the time, which pacing guarantees and no slow machine
//! can break: N bytes at R bytes/s take at least N/R, less two slices.

use std::fs;

use pareco::codec::{Direction, HashAlgo, Message, Packet, RelPath, SessionSpec};

use crate::util::*;

const MIB: u64 = 1 << 20;

/// A tree of 3 MiB in 3 files plus a few small ones.
fn tree(root: &std::path::Path) {
    for i in 0..3u64 {
        file(&root.join(format!("big/{i}")), &noise(MIB as usize, i), 0o644, (1_600_000_000, 0));
    }
    for i in 0..20u64 {
        file(
            &root.join(format!("small/{i}")),
            &noise(100 + i as usize * 50, 100 + i),
            0o600,
            (1_600_000_000, 7),
        );
    }
}

/// The transfer could not have been faster than `rate` allows: every byte
/// sent but a tenth of a second's worth waited for its time.
fn assert_paced(report: &serde_json::Value, rate: u64, what: &str) {
    let bytes = report["bytes_transferred"].as_u64().unwrap();
    let took = report["duration_s"].as_f64().unwrap();
    let least = (bytes as f64 - rate as f64 / 10.0) / rate as f64;
    assert!(took >= least, "{what}: {bytes} bytes in {took:.2}s, faster than {rate} bytes/s: {report}");
    assert_eq!(report["bwlimit"]["bytes_per_s"], rate, "{what}: {report}");
}

#[test]
fn a_capped_transfer_arrives_whole_both_ways() {
    for way in both_ways() {
        tree(&way.src);
        let report = way.sync(&["--bwlimit", "2M", "-c", "256k", "-n", "4"]);
        assert_same_tree(&way.src, &way.dst);
        assert_eq!(report["files_transferred"], 23, "{}: {report}", way.name);
        assert_paced(&report, 2 * MIB, way.name);
        if way.name == "send" {
            // The client itself held its writes back.
            assert!(report["bwlimit"]["waits"].as_u64().unwrap() > 0, "{report}");
        }
    }
}

#[test]
fn the_servers_cap_holds_for_every_session_and_the_lower_one_wins() {
    // The server caps at 2 MiB/s: a client without a limit of its own, or
    // with a higher one, gets 2 MiB/s both ways; a lower one of the
    // client's wins.
    let server = Server::start(&["--bwlimit", "2MiB"]);
    let local = tempfile::tempdir().unwrap();
    tree(local.path());
    let path = local.path().to_str().unwrap();
    let report = sync_ok(&["send", path, &server.url("up"), "-c", "256k"]);
    assert_same_tree(local.path(), &server.path("up"));
    assert_paced(&report, 2 * MIB, "send under the server's cap");
    assert!(report["bwlimit"]["waits"].as_u64().unwrap() > 0, "{report}");

    let back = tempfile::tempdir().unwrap();
    let back_path = back.path().to_str().unwrap();
    let report = sync_ok(&["recv", &server.url("up"), back_path, "--bwlimit", "1G", "-c", "256k"]);
    assert_same_tree(local.path(), back.path());
    assert_paced(&report, 2 * MIB, "recv under the server's cap");

    fs::remove_dir_all(back.path()).unwrap();
    let report = sync_ok(&["recv", &server.url("up"), back_path, "--bwlimit", "1536k", "-n", "2"]);
    assert_same_tree(local.path(), back.path());
    assert_paced(&report, 1536 << 10, "recv under the client's lower cap");
}

#[test]
fn without_a_limit_nothing_is_paced_or_reported() {
    for way in both_ways() {
        tree(&way.src);
        let report = way.sync(&[]);
        assert_same_tree(&way.src, &way.dst);
        assert!(report.get("bwlimit").is_none(), "{}: {report}", way.name);
    }
}

#[test]
fn a_rate_of_zero_or_not_a_size_is_refused_in_one_line() {
    let local = tempfile::tempdir().unwrap();
    let path = local.path().to_str().unwrap();
    for (rate, says) in [
        ("0", "below the least, 1k"),
        ("100", "below the least, 1k"),
        ("fast", "use bytes per second, e.g. 512k, 20M, 1G"),
        ("-5M", "use bytes per second"),
    ] {
        let option = format!("--bwlimit={rate}");
        for args in [
            vec!["send", path, "pareco://127.0.0.1:9/x", &option],
            vec!["recv", "pareco://127.0.0.1:9/x", path, &option],
            vec!["listen", "--root", path, &option],
        ] {
            let out = pareco(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            let err = stderr(&out);
            let first = err.lines().next().unwrap_or("");
            assert!(first.contains("--bwlimit") && first.contains(says), "{args:?}: {err}");
        }
    }
}

#[test]
fn the_rate_takes_the_suffixes_of_the_chunk_size() {
    // 1536k is 1.5 MiB/s, as `-c 1536k` is 1.5 MiB: the report says so.
    let way = &both_ways()[0];
    tree(&way.src);
    let report = way.sync(&["--bwlimit", "1536k", "-n", "1"]);
    assert_eq!(report["bwlimit"]["bytes_per_s"], 1536 << 10, "{report}");
    let report = way.sync(&["--bwlimit", "1g"]);
    assert_eq!(report["bwlimit"]["bytes_per_s"], 1 << 30, "{report}");
}

#[test]
fn a_spec_with_a_limit_and_without_fsync_encodes_each_in_its_place() {
    let keep = pareco::codec::Preserve { owner: true, ..Default::default() };
    let spec = |fsync, bwlimit, preserve| SessionSpec {
        direction: Direction::Upload,
        path: RelPath::new("d").unwrap(),
        chunk_size: 1 << 20,
        hash: HashAlgo::Xxh3,
        includes: vec![],
        excludes: vec![],
        inplace: false,
        delete: false,
        fsync,
        // Varied with the others: every field before `preserve` is always
        // sent, whatever its value.
        hard_links: fsync,
        sparse: bwlimit > 0,
        bwlimit,
        preserve,
    };
    let none = pareco::codec::Preserve::default();
    for spec in [
        spec(false, 0, none),
        spec(true, 0, none),
        spec(false, 5 << 20, none),
        spec(true, 5 << 20, none),
        spec(false, 5 << 20, keep),
        spec(false, 0, keep),
    ] {
        let packet = Packet::new(0, Message::Open { proof: None, spec: spec.clone() });
        let head = packet.encode_head().unwrap();
        let mut frame = bytes::BytesMut::from(&head[..]);
        let decoded =
            tokio_util::codec::Decoder::decode(&mut pareco::codec::FrameCodec::handshake(), &mut frame)
                .unwrap()
                .unwrap();
        assert_eq!(decoded.msg, Message::Open { proof: None, spec }, "{head:02x?}");
    }
}
