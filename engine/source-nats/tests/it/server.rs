//! A real `nats-server -js` for one test: a free loopback port, a store in a temporary
//! directory, killed and reaped on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    child: Child,
    pub port: u16,
    store: tempfile::TempDir,
}

/// Starts `nats-server -js` on `port` with its store in `store` (and `extra` arguments) and
/// waits (up to 10 s) until it accepts connections.
fn spawn(port: u16, store: &std::path::Path, extra: &[&str]) -> Child {
    let child = Command::new(nats_server_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (.ci/run installs the Debian package)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not start on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with_args(&[])
    }

    /// A server started with extra arguments (authorization, …).
    pub fn start_with_args(extra: &[&str]) -> NatsServer {
        let store = tempfile::tempdir().expect("a temporary directory");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        NatsServer {
            child: spawn(port, store.path(), extra),
            port,
            store,
        }
    }

    /// Kills the server (SIGKILL: no goodbye) and starts it again on the same port and store.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.port, self.store.path(), &[]);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` every 10 ms until it holds or `what` fails the test after 20 s (a bound
/// against hanging, not a timing assertion).
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(what, Duration::from_secs(20), condition);
}

/// [`wait_until`] with its own bound: a cluster's leader elections after a node is killed take
/// several Raft timeouts, and on a machine the rest of the test suite keeps busy they took more
/// than 20 s.
pub fn wait_until_within(what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + bound;
    while !condition() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Three `nats-server -js` nodes clustered on loopback ports, each with its own store; killed
/// on drop.
pub struct NatsCluster {
    nodes: Vec<Option<Child>>,
    config_paths: Vec<std::path::PathBuf>,
    pub client_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl NatsCluster {
    pub fn start() -> NatsCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("nats-route://127.0.0.1:{port}"))
            .collect();
        let mut nodes = Vec::new();
        let mut config_paths = Vec::new();
        for index in 0..3 {
            let store = dir.path().join(format!("n{index}"));
            let config = format!(
                "server_name: n{index}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\n\
                 cluster {{ name: tickflow, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                client_ports[index],
                store.display().to_string(),
                route_ports[index],
                routes.join(", ")
            );
            let config_path = dir.path().join(format!("n{index}.conf"));
            std::fs::write(&config_path, config).expect("scratch is writable");
            nodes.push(Some(spawn_node(&config_path)));
            config_paths.push(config_path);
        }
        for port in &client_ports {
            wait_until("a cluster node accepts connections", || {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        NatsCluster {
            nodes,
            config_paths,
            client_ports,
            _dir: dir,
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|port| format!("nats://127.0.0.1:{port}"))
            .collect()
    }

    /// Kills node `index` (SIGKILL).
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts killed node `index` again on its port and store: it rejoins the cluster.
    pub fn restart(&mut self, index: usize) {
        self.kill(index);
        self.nodes[index] = Some(spawn_node(&self.config_paths[index]));
        let port = self.client_ports[index];
        wait_until("the restarted node accepts connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
}

fn spawn_node(config_path: &std::path::Path) -> Child {
    Command::new(nats_server_binary())
        .arg("-c")
        .arg(config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server is installed (.ci/run installs the Debian package)")
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}

/// The Debian package installs `nats-server` in /usr/sbin, which a non-root PATH may lack.
fn nats_server_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}
