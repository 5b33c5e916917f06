//! An HTTPS endpoint for the tests: TLS in front of a plain-HTTP address (a receiver, or
//! the API's stand-in), with a test certificate authority the client is told to trust,
//! as a deployed endpoint behind a TLS-terminating proxy is.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::copy_bidirectional;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// The PEM file of the test certificate authority, to pass with `--ca-cert`.
pub const CA_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/ca.pem");
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/localhost.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/localhost.key");

/// Listens on a free loopback port with the certificate of `localhost` (and
/// `127.0.0.1`), and forwards each connection's decrypted bytes to `backend`, for as
/// long as the test process lives. Returns the port.
pub fn tls_front(backend: SocketAddr) -> u16 {
    let certs = CertificateDer::pem_file_iter(CERT)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .expect("the test certificate");
    let key = PrivateKeyDer::from_pem_file(KEY).expect("the test key");
    // The provider named, not the process's default: nothing here depends on which one
    // another part of the test installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider's protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a TLS configuration");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("non-blocking");
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    if let Ok(mut plain) = TcpStream::connect(backend).await {
                        let _ = copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
    });
    port
}
