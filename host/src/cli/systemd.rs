//! Telling systemd how the service is doing (`Type=notify`): `READY=1` once the host
//! listens, `RELOADING=1` and `READY=1` around a reload, `STOPPING=1` when a shutdown
//! begins. Only when systemd asked, by `NOTIFY_SOCKET`; nothing otherwise.

use std::os::unix::net::UnixDatagram;

/// Sends `state` to systemd's notification socket, if there is one. A failure is
/// logged, never fatal: the service serves whether or not systemd hears of it.
pub(crate) fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket: `@` stands for the leading NUL.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &address)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(err) = sent {
        tracing::warn!("could not tell systemd {state:?}: {err}");
    }
}
