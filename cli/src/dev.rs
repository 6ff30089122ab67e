//! `skm dev`: the three tiers as three processes on loopback, each with its
//! own data directory and certificate, until Ctrl-C or SIGTERM.

use std::process::{ExitCode, Stdio};
use std::time::Duration;

use skm_runtime::Service;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::args::{DevArgs, SealArg, StoreArg};
use crate::devstack::{self, DevSeal, MetricsPorts, Ports};
use crate::etcd::EtcdCluster;
use crate::failure::Failure;

/// Starts one tier as `<skm> daemon <tier> --config <file>`. Its log lines
/// go to `log` (appended) when given, else to our stderr prefixed with the
/// tier name.
pub fn spawn_tier(
    skm: &std::path::Path,
    service: Service,
    config: &std::path::Path,
    log: Option<&std::path::Path>,
) -> std::io::Result<Child> {
    let mut command = Command::new(skm);
    command.arg("daemon").arg(service.name()).arg("--config").arg(config).stdin(Stdio::null()).kill_on_drop(true);
    if let Some(softhsm) = devstack::softhsm_conf(service, config) {
        command.env("SOFTHSM2_CONF", softhsm);
    }
    if let Some(log) = log {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        command.stdout(file.try_clone()?).stderr(file);
        return command.spawn();
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let name = service.name();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(name, out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(name, err));
    }
    Ok(child)
}

async fn prefix_lines(name: &'static str, stream: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{name:<11}] {line}");
    }
}

/// Asks a child to stop (SIGTERM), then kills it after `grace`.
pub async fn stop(child: &mut Child, grace: Duration) {
    if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

pub(crate) async fn run(args: DevArgs) -> Result<ExitCode, Failure> {
    let seal = match args.seal {
        SealArg::Passphrase => DevSeal::Passphrase,
        SealArg::Shamir => DevSeal::Shamir,
        SealArg::Pkcs11 => DevSeal::Pkcs11,
    };
    if args.replicas > 1 && args.store != StoreArg::Etcd {
        return Err(Failure::usage(format!(
            "--replicas {} needs --store etcd: kms-api replicas share their records through etcd",
            args.replicas
        )));
    }
    let ports = if args.store == StoreArg::Etcd { 15 + 2 * (args.replicas - 1) } else { 9 };
    if args.port_base > u16::MAX - (ports - 1) {
        return Err(Failure::usage(format!("--port-base {} leaves no room for {ports} ports", args.port_base)));
    }
    let mut stack = devstack::prepare_with_metrics(
        &args.data_dir,
        Ports::from_base(args.port_base).with_rest(args.port_base + 7).with_console(args.port_base + 8),
        seal,
        &args.trust_domain,
        Some(MetricsPorts::from_base(args.port_base + 4)),
    )?;
    // Dropped last: the tiers stop before their store does.
    let _etcd = match args.store {
        StoreArg::Sled => None,
        StoreArg::Etcd => {
            let clients = [Service::KmsApi.name(), Service::SystemKeyd.name()];
            let mut cluster = EtcdCluster::prepare(&stack.dir.join("etcd"), 3, args.port_base + 9, &clients)?;
            eprintln!("skm dev: starting etcd (3 members, client URLs {})", cluster.endpoints().join(", "));
            cluster.start(Service::KmsApi.name()).await?;
            devstack::store_on_etcd(&stack, &cluster)?;
            Some(cluster)
        }
    };
    let mut replicas = Vec::new();
    for n in 2..=args.replicas {
        let user = args.port_base + 15 + 2 * (n - 2);
        replicas.push((n, devstack::add_replica(&mut stack, n, user, user + 1)?));
    }
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for service in [Service::RootKeyd, Service::SystemKeyd, Service::KmsApi] {
        children.push((service, spawn_tier(&exe, service, &stack.config(service), None)?));
    }
    for (n, config) in &replicas {
        children.push((Service::KmsApi, spawn_tier(&exe, Service::KmsApi, config, None)?));
        eprintln!(
            "skm dev: kms-api replica {} on user port {}, admin port {}",
            devstack::replica_name(*n),
            args.port_base + 15 + 2 * (n - 2),
            args.port_base + 16 + 2 * (n - 2)
        );
    }
    println!("export SKM_PROFILE={}", stack.profile_path.display());
    eprintln!(
        "skm dev: root-keyd, system-keyd and kms-api are starting from {} (user port {}, admin port {}).",
        stack.dir.display(),
        stack.profile.user_endpoint,
        stack.profile.admin_endpoint
    );
    eprintln!(
        "skm dev: REST API at https://{}/v1 (CA: {}; docs/REST.md)",
        stack.profile.rest_endpoint,
        stack.app_profile_path.with_file_name("ca.pem").display()
    );
    eprintln!(
        "skm dev: web console at https://localhost:{}/ (sign in: `skm console login` prints a one-time link)",
        args.port_base + 8
    );
    for (tier, endpoint) in &stack.profile.metrics {
        eprintln!("skm dev: {tier} metrics at http://{endpoint}/metrics");
    }
    eprintln!(
        "skm dev: applications use {} (user port and CA only; docs/CLIENTS.md); SKM_PROFILE is the operator's.",
        stack.app_profile_path.display()
    );
    if seal == DevSeal::Shamir {
        eprintln!("skm dev: Shamir seal: run `skm root init`, then `skm root unseal` with enough shares.");
    } else if seal == DevSeal::Pkcs11 {
        eprintln!(
            "skm dev: DEVELOPMENT ONLY: the root key is inside a SoftHSM2 token in {}, and its PIN sits beside it \
             ({}); SoftHSM2 is a software token, so this shows the PKCS#11 path, not an HSM's protection.",
            stack.dir.join("root-keyd").join(devstack::SOFTHSM_DIR).display(),
            stack.dir.join("root-keyd").join("pin").display()
        );
    } else {
        eprintln!(
            "skm dev: DEVELOPMENT ONLY: the passphrase that unseals the root key ({}) sits beside the sealed root \
             key, so anyone who can read that folder has every key; a deployment uses Shamir shares (docs: README, \
             SECURITY.md).",
            stack.dir.join("root-keyd").join("passphrase").display()
        );
    }
    eprintln!("skm dev: `skm status --wait 30` tells when it is ready; Ctrl-C stops all three.");

    let (_trigger, shutdown) = skm_runtime::shutdown::on_signals();
    let exited = loop {
        let exited = tokio::select! {
            _ = shutdown.wait() => None,
            exited = wait_any(&mut children) => Some(exited),
        };
        // With replicas, the others go on serving (clients fail over).
        let replicas = children.iter().filter(|(s, _)| *s == Service::KmsApi).count();
        match exited {
            Some((Service::KmsApi, i, status)) if replicas > 1 => {
                children.remove(i);
                eprintln!("skm dev: a kms-api replica exited ({status}); {} still serving", replicas - 1);
            }
            other => break other.map(|(service, _, status)| (service, status)),
        }
    };
    for (_, child) in children.iter_mut() {
        stop(child, Duration::from_secs(10)).await;
    }
    match exited {
        None => {
            eprintln!("skm dev: stopped");
            Ok(ExitCode::SUCCESS)
        }
        Some((service, status)) => {
            Err(Failure::refused(format!("{} exited ({status}); stopped the others", service.name())))
        }
    }
}

/// The first child to exit: its tier, index and exit status.
async fn wait_any(children: &mut [(Service, Child)]) -> (Service, usize, String) {
    loop {
        for (i, (service, child)) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                return (*service, i, status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
