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
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("services", &self.services).finish()
    }
}

impl Health {
    /// Sets the overall status and that of every named service.
    pub async fn set(&self, serving: bool) {
        let status = if serving { ServingStatus::Serving } else { ServingStatus::NotServing };
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// Adds health (NOT_SERVING to start with, for `""` and each of
/// `service_names`) and reflection over SKM's protos to `routes`.
/// Reflection lists only what this port serves: `service_names`, health
/// and reflection itself (not every service in SKM's protos).
pub async fn add_health_and_reflection(routes: &mut RoutesBuilder, service_names: &[&'static str]) -> Health {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health { reporter, services: service_names.to_vec() };
    health.set(false).await;
    routes.add_service(health_service);
    let mut reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(skm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection");
    for name in service_names {
        reflection = reflection.with_service_name(*name);
    }
    let reflection = reflection.build_v1();
    match reflection {
        Ok(svc) => {
            routes.add_service(svc);
        }
        Err(e) => tracing::warn!(error = %e, "reflection unavailable"),
    }
    health
}
