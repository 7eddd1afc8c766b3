//! Socket activation with the real peer, Debian's `systemd-socket-activate`: it binds, waits for
//! the first connection, then starts rodent with the socket as descriptor 3 and `LISTEN_FDS`,
//! `LISTEN_PID` and `LISTEN_FDNAMES` set, exactly as a systemd `.socket` unit does.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::Command;

use nix::sys::signal::Signal::SIGTERM;
use nix::sys::signal::kill;
use serde_json::Value;

use super::{
    activated_command, activation_variables, environ_of, held_listener, inherit_as_first_fd,
};
use kit::namespace::{self, UNSHARE, only_child};
use kit::{PATIENCE, Rodent, Spawn, TempDir, client, eventually, free_port, require_tool, rodent};

fn have_socket_activate() -> bool {
    require_tool(
        "systemd-socket-activate",
        "apt-get install systemd; see scripts/ci/tools.sh",
    )
}

/// `systemd-socket-activate` listening on every address of `listen`, with `options` before the
/// program, starting rodent with the spawn's variables (it passes its child only the variables
/// given with `-E`).
fn socket_activate(spawn: &Spawn, listen: &[&str], options: &[&str]) -> Command {
    let mut wrapper = vec!["systemd-socket-activate".to_string()];
    for address in listen {
        wrapper.push(format!("--listen={address}"));
    }
    wrapper.extend(options.iter().map(|o| o.to_string()));
    for (name, value) in spawn.vars() {
        wrapper.push(format!("--setenv={name}={value}"));
    }
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    spawn.command_via(&wrapper, kit::binary())
}

/// Waits until a raw (non-JSON) line containing `needle` has been written.
fn wait_raw(process: &Rodent, needle: &str) {
    eventually(PATIENCE, || {
        let lines = process.raw_lines();
        match lines.iter().any(|l| l.contains(needle)) {
            true => Ok(()),
            false => Err(format!(
                "no line with {needle:?}; the output was:\n{}",
                lines.join("\n")
            )),
        }
    });
}

/// `GET /` answered by whoever serves `address`: (status, the answering PID).
async fn who_answers(address: &str) -> (u16, Option<u64>) {
    let response = client()
        .get(format!("http://{address}/"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET / on {address} got no response: {e}"));
    let status = response.status().as_u16();
    let info: Value = response.json().await.expect("a JSON body");
    (status, info["pid"].as_u64())
}

fn nothing_listens_on(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[tokio::test]
async fn systemd_socket_activate_hands_rodent_its_socket_and_the_first_request_waits_in_its_queue()
{
    if !have_socket_activate() {
        return;
    }
    let port = free_port();
    let configured = free_port();
    let spawn = rodent().env("RODENT_PORT", configured.to_string());
    let address = format!("127.0.0.1:{port}");
    let command = socket_activate(&spawn, &[&address], &["--fdname=http"]);
    let activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, &format!("Listening on {address} as 3."));

    // Nothing runs rodent yet: this very request is what starts it, and it waits in the
    // socket's queue until rodent accepts it.
    let (status, pid) = who_answers(&address).await;
    assert_eq!(status, 200);
    // The peer execs rodent in its own place (non-accept mode).
    let service = activator.pid();
    assert_eq!(pid, Some(service.as_raw() as u64), "rodent itself answered");

    let listening = activator.wait_log(|l| l["message"] == "listening");
    assert_eq!(listening["address"], address.as_str());
    let inherited = activator.wait_log(|l| l["message"] == "serving on an inherited socket");
    assert_eq!(inherited["fd"], 3);
    assert_eq!(inherited["name"], "http");
    assert!(
        inherited["ignored"]
            .as_str()
            .is_some_and(|i| i.contains("RODENT_HOST") && i.contains("RODENT_PORT")),
        "the line says which variables no longer apply: {inherited}"
    );
    assert!(
        nothing_listens_on(configured),
        "rodent bound nothing of its own"
    );
    assert_eq!(
        activation_variables(&environ_of(service)).len(),
        3,
        "the peer set LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES"
    );

    let mut activator = activator;
    activator.signal(SIGTERM);
    assert_eq!(
        activator.exit_code(PATIENCE),
        0,
        "rodent drained and exited 0"
    );
}

#[tokio::test]
async fn several_sockets_serve_on_the_one_named_http() {
    if !have_socket_activate() {
        return;
    }
    let (other, http) = (free_port(), free_port());
    let addresses = [format!("127.0.0.1:{other}"), format!("127.0.0.1:{http}")];
    let spawn = rodent();
    let command = socket_activate(
        &spawn,
        &[&addresses[0], &addresses[1]],
        &["--fdname=admin:http"],
    );
    let mut activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, "as 4.");
    let (status, _) = who_answers(&addresses[1]).await;
    assert_eq!(status, 200);
    let inherited = activator.wait_log(|l| l["message"] == "serving on an inherited socket");
    assert_eq!(
        (inherited["fd"].clone(), inherited["name"].clone()),
        (4.into(), "http".into())
    );
    activator.signal(SIGTERM);
    assert_eq!(activator.exit_code(PATIENCE), 0);
}

#[test]
fn several_sockets_none_named_http_are_refused_naming_listen_fdnames() {
    if !have_socket_activate() {
        return;
    }
    let addresses = [
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    ];
    let spawn = rodent();
    let command = socket_activate(
        &spawn,
        &[&addresses[0], &addresses[1]],
        &["--fdname=one:two"],
    );
    let mut activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, "as 4.");
    let _trigger = TcpStream::connect(&addresses[0]).expect("the peer listens");
    assert_eq!(activator.exit_code(PATIENCE), 78);
    refused_naming(&activator, "LISTEN_FDNAMES");
}

/// The configuration error line naming `variable`.
fn refused_naming(process: &Rodent, variable: &str) -> Value {
    process.wait_log(|l| l["variable"] == variable && l["level"] == "ERROR")
}

#[test]
fn a_datagram_socket_is_refused_with_78_naming_listen_fds() {
    if !have_socket_activate() {
        return;
    }
    let address = format!("127.0.0.1:{}", free_port());
    let spawn = rodent();
    let command = socket_activate(&spawn, &[&address], &["--datagram"]);
    let mut activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, "as 3.");
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.send_to(b"wake up", &address))
        .expect("a datagram is sent");
    assert_eq!(activator.exit_code(PATIENCE), 78);
    let line = refused_naming(&activator, "LISTEN_FDS");
    let message = line["message"].as_str().unwrap_or_default();
    assert!(message.contains("not a listening TCP socket"), "{line}");
}

#[test]
fn a_unix_socket_is_refused_with_78_naming_listen_fds() {
    if !have_socket_activate() {
        return;
    }
    let dir = TempDir::new("unix-activation");
    let path = dir.join("rodent.sock");
    let spawn = rodent();
    let command = socket_activate(&spawn, &[path.to_str().unwrap()], &[]);
    let mut activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, "as 3.");
    let mut trigger = UnixStream::connect(&path).expect("the peer listens");
    let _ = trigger.write_all(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(activator.exit_code(PATIENCE), 78);
    refused_naming(&activator, "LISTEN_FDS");
}

#[test]
fn a_tcp_socket_that_does_not_listen_or_a_file_is_refused_with_78() {
    let listener = held_listener();
    let connected = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let file = std::fs::File::open("/dev/null").unwrap();
    for fd in [connected.as_raw_fd(), file.as_raw_fd()] {
        let spawn = rodent();
        let command = activated_command(&spawn, fd);
        let mut rodent = spawn.no_wait().spawn_command(command);
        assert_eq!(rodent.exit_code(PATIENCE), 78, "fd {fd}");
        let line = refused_naming(&rodent, "LISTEN_FDS");
        assert!(
            line["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a listening TCP socket")),
            "{line}"
        );
        assert!(
            !rodent
                .json_lines()
                .iter()
                .any(|l| l["message"] == "listening"),
            "nothing was served"
        );
    }
}

#[tokio::test]
async fn listen_pid_naming_another_process_is_ignored() {
    let listener = held_listener();
    let spawn = rodent()
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", std::process::id().to_string());
    let mut command = spawn.command();
    inherit_as_first_fd(&mut command, listener.as_raw_fd());
    let mut rodent = spawn.spawn_command(command);
    assert_ne!(
        rodent.addr(),
        listener.local_addr().unwrap(),
        "rodent bound its own socket"
    );
    let ignored = rodent.wait_log(|l| l["variable"] == "LISTEN_PID");
    assert_eq!(ignored["level"], "INFO", "{ignored}");
    assert_eq!(ignored["listen_pid"], std::process::id());
    assert_eq!(rodent.get("/").await.status(), 200);
    rodent.signal(SIGTERM);
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}

/// `RODENT_INIT=always` under `systemd-socket-activate`: the supervisor is the process the
/// variables name; it hands the socket to the service it starts, and neither the service nor
/// anything else it starts sees the variables.
#[tokio::test]
async fn under_the_supervisor_the_service_gets_the_socket_and_not_the_variables() {
    if !have_socket_activate() {
        return;
    }
    let address = format!("127.0.0.1:{}", free_port());
    let spawn = rodent().env("RODENT_INIT", "always");
    let command = socket_activate(&spawn, &[&address], &["--fdname=http"]);
    let activator = spawn.no_wait().spawn_command(command);
    wait_raw(&activator, "as 3.");
    let (status, pid) = who_answers(&address).await;
    assert_eq!(status, 200);
    let supervisor = activator.pid();
    let service = only_child(supervisor);
    assert_eq!(pid, Some(service.as_raw() as u64), "the service answered");
    let environ = environ_of(service);
    assert_eq!(
        activation_variables(&environ),
        Vec::<&String>::new(),
        "the service was started without the variables"
    );
    activator.wait_log(|l| l["message"] == "supervising");
    kill(supervisor, SIGTERM).unwrap();
    let mut activator = activator;
    assert_eq!(activator.exit_code(PATIENCE), 0);
}

/// As PID 1 of a PID namespace, with `LISTEN_PID=1`: what Podman passes a socket-activated
/// container.
#[tokio::test]
async fn as_pid1_with_listen_pid_1_the_service_serves_the_socket() {
    if !namespace::available() {
        return;
    }
    let listener = held_listener();
    let spawn = rodent();
    let mut wrapper = vec!["sh", "-c", r#"export LISTEN_PID=1; exec "$0" "$@""#];
    wrapper.extend_from_slice(UNSHARE);
    let mut command = spawn.command_via(&wrapper, kit::binary());
    command.env("LISTEN_FDS", "1");
    inherit_as_first_fd(&mut command, listener.as_raw_fd());
    let mut rodent = spawn.spawn_command(command);
    assert_eq!(rodent.addr(), listener.local_addr().unwrap());
    let (status, pid) = who_answers(&rodent.addr().to_string()).await;
    assert_eq!(status, 200);
    assert_ne!(pid, Some(1), "the service answered, not the supervisor");
    let init = only_child(rodent.pid());
    kill(init, SIGTERM).unwrap();
    assert_eq!(rodent.exit_code(PATIENCE), 0);
}
