//! `grpc.health.v1` and reflection for every service. The overall status
//! (service name `""`) starts NOT_SERVING; a daemon flips it once it can do
//! its work (root key unsealed, system keys loaded).

use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Handle to flip a daemon's health.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    services: Vec<&'static str>,
    serving: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("services", &self.services).finish()
    }
}

impl Health {
    /// Sets the overall status and that of every named service.
    pub async fn set(&self, serving: bool) {
        self.serving.store(serving, std::sync::atomic::Ordering::Release);
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter.set_service_status(*name, status).await;
        }
    }

    /// The status last set (for the readiness metric).
    pub fn is_serving(&self) -> bool {
        self.serving.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The services every port serves besides its own.
pub const REFLECTION_SERVICES: [&str; 3] =
    ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

/// Adds health (NOT_SERVING to start with, for `""` and each of
/// `service_names`) and reflection over SKM's protos to `routes`.
/// Reflection (v1 and v1alpha) lists only what this port serves:
/// `service_names`, health and reflection itself (not every service in
/// SKM's protos).
pub async fn add_health_and_reflection(routes: &mut RoutesBuilder, service_names: &[&'static str]) -> Health {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health { reporter, services: service_names.to_vec(), serving: Default::default() };
    health.set(false).await;
    routes.add_service(health_service);
    // Both reflection versions: grpc.reflection.v1, and v1alpha, which many
    // tools still speak (Python's grpcio-reflection, older grpcurl).
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(skm_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in REFLECTION_SERVICES.iter().chain(service_names) {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    match (builder().build_v1(), builder().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => {
            routes.add_service(v1);
            routes.add_service(v1alpha);
        }
        (Err(e), _) | (_, Err(e)) => tracing::warn!(error = %e, "reflection unavailable"),
    }
    health
}
