//! A minimal kobo hub for the XML-RPC source: [`kobo_testkit::xmlrpc_hub::XmlRpcHub`] serving the fixture
//! hub (`fixture.sql`, `fixture-last-seen.tsv`) on 127.0.0.1 in kobo's wire format (Python's
//! `xmlrpc.client` marshalling, as `xmlrpc/` checks it against the real captures byte for byte). It
//! answers `client.list_workers`, `client.get_worker_info` and `system.multicall` of those; each response
//! closes its connection (`Connection: close`), as the hub's gunicorn does. Anything else gets a fault.

use kobo_testkit::xmlrpc_hub::XmlRpcHub;

use super::kobo_wire::fixture_exports;

/// The running hub; stops when dropped.
pub struct TestHub {
    hub: XmlRpcHub,
}

impl TestHub {
    /// Serves the fixture hub on a free port of 127.0.0.1.
    pub async fn start() -> TestHub {
        let hub = XmlRpcHub::start(fixture_exports())
            .await
            .expect("start the fixture hub");
        TestHub { hub }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.hub.addr()
    }
}
