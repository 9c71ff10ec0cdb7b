//! The engine's types in a build without the `waf` feature: uninhabited, so no rules compile
//! and no transaction exists; the WAF keys keep their fail-safe modes there.

use std::convert::Infallible;
use std::sync::Arc;

pub type HeaderRef<'a> = (&'a [u8], &'a [u8]);

#[derive(Debug)]
pub struct RuleSet(Infallible);

impl RuleSet {
    pub fn compile(_text: &str) -> Result<RuleSet, String> {
        Err("pingress was built without the waf feature (libmodsecurity)".into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intervention {
    pub status: u16,
    pub url: Option<String>,
    pub log: Option<String>,
}

pub struct RequestHead<'a> {
    pub client_ip: &'a str,
    pub client_port: u16,
    pub server_ip: &'a str,
    pub server_port: u16,
    pub uri: &'a str,
    pub method: &'a str,
    pub version: &'a str,
}

pub struct Tx(Infallible);

impl Tx {
    pub fn new(rules: &Arc<RuleSet>, _id: Option<&str>) -> Option<Tx> {
        match rules.0 {}
    }
    pub fn request_head<'h>(
        &mut self,
        _head: &RequestHead<'_>,
        _headers: impl Iterator<Item = HeaderRef<'h>>,
    ) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn request_body_piece(&mut self, _piece: &[u8]) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn request_body_done(&mut self) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn response_head<'h>(
        &mut self,
        _status: u16,
        _protocol: &str,
        _headers: impl Iterator<Item = HeaderRef<'h>>,
    ) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn response_body_piece(&mut self, _piece: &[u8]) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn response_body_done(&mut self) -> Option<Intervention> {
        match self.0 {}
    }
    pub fn logging(&mut self, _status: u16) {
        match self.0 {}
    }
}
