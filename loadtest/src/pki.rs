//! A throw-away certificate authority made at run time, and a server certificate for `localhost`
//! and `127.0.0.1` signed by it: the simulated venues serve `wss://` with it and the engine trusts
//! the CA through `feeds.tls_extra_roots_pem`, so the engine's TLS path is the one real venues use.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make the test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot build the TLS server config: {0}")]
    Tls(#[from] rustls::Error),
}

/// The CA (PEM for the engine, DER for an in-process client) and the simulators' TLS settings.
pub struct TestPki {
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("TestPki").finish_non_exhaustive()
    }
}

impl TestPki {
    pub fn generate() -> Result<TestPki, PkiError> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tickflow-load test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params.signed_by(&server_key, &*ca)?;
        let server_key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        );
        let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], server_key_der)?;
        Ok(TestPki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_config: Arc::new(server_config),
        })
    }
}
