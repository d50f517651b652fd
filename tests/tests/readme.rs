//! The README's local loop, run as it is written: the `serve` block (cargo lambda watch, the
//! local schedules, the console) in the background, then every line of the `run` block (the
//! CLI, curl, cargo lambda invoke) under `bash -euo pipefail`. A command that stops working
//! as written fails this test, so the README cannot drift from what works.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use snapnest_e2e::moto::{repo_root, wait_for_port};

/// The first ```sh block after `<!-- local-loop: <name> -->`.
fn block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- local-loop: {name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("README has no {marker}"))..];
    let start = after.find("```sh\n").expect("a sh block after the marker") + "```sh\n".len();
    let end = after[start..].find("```").expect("the block ends");
    after[start..start + end].to_owned()
}

struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.0.id())]).status();
        let _ = self.0.wait();
    }
}

#[test]
fn the_readme_local_loop_works_as_written() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let (serve, run) = (block(&readme, "serve"), block(&readme, "run"));
    for port in [9000, 8080] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the README's loop uses it (stop the local watch or console first)"
        );
    }
    // The README's state goes to a scratch folder, not the checkout's `.snapnest/`: every
    // function process inherits the environment watch runs in.
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let group = Group(
        snapnest_e2e::without_test_env(&mut Command::new("bash"))
            .args(["-c", &format!("{serve}\nwait")])
            .current_dir(repo_root())
            .env("SNAPNEST_DATA_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    wait_for_port(9000, Duration::from_secs(600));
    wait_for_port(8080, Duration::from_secs(600));

    let output = snapnest_e2e::without_test_env(&mut Command::new("bash"))
        .args(["-euo", "pipefail", "-c", &run])
        .current_dir(repo_root())
        .env("SNAPNEST_DATA_DIR", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let serve_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let tail: String =
        serve_log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        output.status.success(),
        "the run block failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- serve (last lines)\n{tail}"
    );
    // The backup and the restore were followed to their end by the CLI.
    assert!(stderr.contains(" Succeeded: Backed up: 7 resources"), "{stderr}");
    assert!(stderr.contains(" Succeeded: Restored in place"), "{stderr}");
    assert!(stdout.contains("will stop 2 instance(s)"), "{stdout}");
    assert!(stdout.contains("<title>snapnest"), "the console's page: {stdout}");
    drop(group);
    let kept: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(kept.len() > 1, "the functions kept their state in the scratch folder: {kept:?}");
}
