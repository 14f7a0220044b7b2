//! Helpers shared by the central integration tests.

#![allow(dead_code)]

pub mod chat_server;
pub mod events;
pub mod fleet_load;
pub mod mosquitto;
pub mod plates;
pub mod postgres;
pub mod redis;
pub mod report;
pub mod staff;
pub mod webdriver;
