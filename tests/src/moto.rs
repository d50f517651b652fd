//! Starts a moto server (the AWS-compatible emulator) on a free 127.0.0.1 port for the
//! adapter tests, and stops it when the test process ends.
//!
//! moto is installed, pinned, by `scripts/install-tools.sh` into `.tools/venv`; this
//! module runs that script when the server is missing, so `cargo test` alone works.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    pub endpoint: String,
    _guard: Child,
}

/// The repository root (the folder with the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `.tools/venv/bin`, installing the pinned tools first when they are missing.
pub fn tools_bin() -> PathBuf {
    let root = repo_root();
    let venv =
        std::env::var_os("SNAPNEST_TOOLS_DIR").map(PathBuf::from).unwrap_or_else(|| root.join(".tools")).join("venv");
    let bin = venv.join("bin");
    if !bin.join("moto_server").exists() || !bin.join("cargo-lambda").exists() {
        let status = Command::new("bash")
            .arg(root.join("scripts/install-tools.sh"))
            .status()
            .expect("run scripts/install-tools.sh");
        assert!(status.success(), "scripts/install-tools.sh failed");
    }
    bin
}

/// A port the OS says is free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a free port").port()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listened on 127.0.0.1:{port} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Moto {
    /// The one moto server of this test process, started on first use.
    ///
    /// Tests share it and isolate themselves by unique names (moto's reset is global).
    /// It also sets the SDK's environment (`AWS_ENDPOINT_URL`, dummy credentials) for this process.
    pub fn shared() -> &'static Moto {
        static MOTO: OnceLock<Moto> = OnceLock::new();
        MOTO.get_or_init(|| {
            let moto = Moto::start();
            // SAFETY of set_var: done once, before any test of this process reads the variables
            // (every user goes through this initializer first).
            std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_REGION", "us-east-1");
            std::env::remove_var("AWS_PROFILE");
            moto
        })
    }

    fn start() -> Moto {
        let server = tools_bin().join("moto_server");
        let port = free_port();
        // moto runs under a small Python watchdog that stops it when our stdin closes,
        // i.e. when this test process exits, however it exits.
        let watchdog = "import subprocess, sys\n\
                        p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n\
                        sys.stdin.read()\n\
                        p.terminate()\n";
        let child = Command::new("python3")
            .args(["-c", watchdog])
            .arg(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, Duration::from_secs(60));
        Moto { endpoint: format!("http://127.0.0.1:{port}"), _guard: child }
    }
}
