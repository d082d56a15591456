//! Septum's build tool as a library, so the system tests drive QEMU the same way
//! `cargo xtask run` does.

pub mod args;
pub mod bench;
pub mod broker;
pub mod build;
pub mod cli;
pub mod devicetree;
pub mod disk;
pub mod dist;
pub mod fleet;
pub mod image;
pub mod kmod;
pub mod linux;
pub mod prereq;
pub mod progress;
pub mod provision;
pub mod qemu;
pub mod system;
pub mod trust;
pub mod verify;
