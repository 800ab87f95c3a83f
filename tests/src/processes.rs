//! The fleet as separate processes: the `dispatcher` and `worker` binaries
//! built beside the running one, pointed at one [`TestEnv`]. The fault suite
//! kills and restarts them; the fleet benchmark measures them the way they
//! run in production (their own processes, their own runtimes).

use std::process::Stdio;
use std::time::Duration;

use protocol::Tier;
use tokio::process::{Child, Command};

use crate::{Api, TestEnv};

/// What the processes are started with beyond the environment's own URLs.
#[derive(Clone, Debug, Default)]
pub struct FleetSettings {
    /// Extra environment for the dispatcher (`SUBMIT_RATE_PER_MINUTE`, …).
    pub dispatcher_env: Vec<(String, String)>,
    /// `MAX_CONCURRENT_JOBS` of each worker.
    pub worker_jobs: u16,
    /// `RUST_LOG` of every process.
    pub log: String,
}

impl FleetSettings {
    pub fn new(worker_jobs: u16) -> FleetSettings {
        FleetSettings {
            dispatcher_env: Vec::new(),
            worker_jobs,
            log: "error".to_string(),
        }
    }

    pub fn dispatcher_env(mut self, key: &str, value: impl Into<String>) -> FleetSettings {
        self.dispatcher_env.push((key.to_string(), value.into()));
        self
    }
}

/// A dispatcher process and CPU-queue worker processes on one environment.
pub struct ProcessFleet {
    pub env: TestEnv,
    pub port: u16,
    pub api: Api,
    settings: FleetSettings,
    dispatcher: Option<Child>,
    workers: Vec<Child>,
    next_worker: usize,
}

impl ProcessFleet {
    /// Starts the dispatcher (waiting for `/healthz`) and `workers` workers
    /// (not waiting: they connect when they are up). `api` submits as a new
    /// free-tier tenant named `tenant`.
    pub async fn start(
        env: TestEnv,
        tenant: &str,
        workers: usize,
        settings: FleetSettings,
    ) -> ProcessFleet {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("bound")
            .port();
        let key = env.api_key(tenant, Tier::Free).await;
        let mut fleet = ProcessFleet {
            api: Api::new(&format!("http://127.0.0.1:{port}"), &key),
            env,
            port,
            settings,
            dispatcher: None,
            workers: Vec::new(),
            next_worker: 0,
        };
        fleet.start_dispatcher().await;
        for _ in 0..workers {
            fleet.add_worker();
        }
        fleet
    }

    fn command(&self, binary: &str) -> Command {
        let mut command = Command::new(crate::binary(binary));
        command
            .env("DATABASE_URL", &self.env.database_url)
            .env("AMQP_URL", &self.env.amqp_url)
            .env("BLOB_STORE", &self.env.blob_dir)
            .env("SECRETS_KEYS", &self.env.secrets_keys)
            .env("RUST_LOG", &self.settings.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    }

    pub async fn start_dispatcher(&mut self) {
        let mut command = self.command("dispatcher");
        command
            .arg("serve")
            .env("LISTEN_ADDR", format!("127.0.0.1:{}", self.port))
            .env("WEBHOOK_ALLOW_HTTP", "true")
            .env("WEBHOOK_ALLOW_HOSTS", "127.0.0.1");
        for (key, value) in &self.settings.dispatcher_env {
            command.env(key, value);
        }
        self.dispatcher = Some(command.spawn().expect("dispatcher starts"));
        let health = format!("http://127.0.0.1:{}/healthz", self.port);
        for _ in 0..200 {
            if reqwest::get(&health).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("dispatcher did not come up");
    }

    /// The dispatcher's process id (for its memory figures in /proc).
    pub fn dispatcher_pid(&self) -> Option<u32> {
        self.dispatcher.as_ref().and_then(Child::id)
    }

    /// SIGKILL: no graceful shutdown, as a crash or an OOM kill.
    pub async fn kill_dispatcher(&mut self) {
        if let Some(mut child) = self.dispatcher.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    pub fn add_worker(&mut self) {
        let name = format!("worker-{}", self.next_worker);
        self.next_worker += 1;
        let child = self
            .command("worker")
            .args([
                "serve",
                "--queue",
                "cpu",
                "--backend",
                "cpu",
                "--warm-model",
                "false",
                "--worker-name",
                &name,
            ])
            .env("MAX_CONCURRENT_JOBS", self.settings.worker_jobs.to_string())
            .spawn()
            .expect("worker starts");
        self.workers.push(child);
    }

    /// SIGKILL the oldest worker and start a replacement.
    pub async fn replace_a_worker(&mut self) {
        let mut victim = self.workers.remove(0);
        let _ = victim.start_kill();
        let _ = victim.wait().await;
        self.add_worker();
    }

    /// SIGKILL every worker (their unacknowledged messages go back to the queue).
    pub async fn kill_workers(&mut self) {
        for mut worker in self.workers.drain(..) {
            let _ = worker.start_kill();
            let _ = worker.wait().await;
        }
    }

    pub async fn stop(mut self) {
        self.kill_dispatcher().await;
        self.kill_workers().await;
        self.env.cleanup().await;
    }
}
