//! Helpers shared by the central integration tests.

#![allow(dead_code)]

pub mod chat_server;
pub mod events;
pub mod mosquitto;
pub mod plates;
pub mod postgres;
pub mod report;
