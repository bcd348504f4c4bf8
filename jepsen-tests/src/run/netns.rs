//! A network namespace per run, so partitions never touch the host's network
//! and several runs (or other tests) cannot disturb each other.
//!
//! The runner enters the namespace itself, before its async runtime starts any
//! thread: a thread keeps the namespace it was created in, so entering first
//! puts every later thread, the client connections and every child process
//! (`sluice cluster start` and the nodes it spawns) in the namespace. Node i
//! listens on 127.0.0.(10+i); loopback inside the namespace carries it all.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, bail};

/// Node i's address inside the namespace.
pub fn node_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + i as u8)
}

/// A namespace this process created and entered; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    deleted: bool,
}

/// Runs `cmd`; its stderr in the error if it fails.
pub(crate) fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Creates `name`, enters it and brings its loopback up.
    ///
    /// Must run while this process has a single thread (before any runtime):
    /// `setns` moves only the calling thread.
    pub fn create_and_enter(name: &str) -> anyhow::Result<Netns> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("not root: network namespaces and nftables need root");
        }
        run(Command::new("ip").args(["netns", "add", name]))
            .context("cannot create the run's network namespace (is iproute2 installed?)")?;
        let ns = Netns {
            name: name.to_string(),
            deleted: false,
        };
        let path = format!("/var/run/netns/{name}");
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        // SAFETY: a valid namespace fd; CLONE_NEWNET checks its type.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot enter network namespace {name}"));
        }
        run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (its mount point; the kernel frees it once the
    /// last process in it exits). Idempotent.
    pub fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        if let Err(e) = run(Command::new("ip").args(["netns", "delete", &self.name])) {
            eprintln!("warning: {e:#}");
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}
