//! One file, both entrances, for a handler written in Python or JavaScript: the
//! componentized handler (exporting `cmq:push/handler`) composed with the wasi-http
//! entrance (`guest/entrance`, importing it), so that the composition exports
//! `cmq:push/handler` for `cmq-host` and `wasi:http/incoming-handler` for Spin and
//! `wasmtime serve`, as a Rust handler's component does. What either imports (WASI)
//! the composition imports.

use anyhow::{Context as _, Result};
use wac_graph::types::Package;
use wac_graph::{CompositionGraph, EncodeOptions};

/// The handler interface, as both components name it.
const HANDLER: &str = "cmq:push/handler@0.2.0";

/// `handler` and `entrance` composed: the bytes of one component.
pub fn with_entrance(handler: &[u8], entrance: &[u8]) -> Result<Vec<u8>> {
    let mut graph = CompositionGraph::new();
    let handler = Package::from_bytes("cmq:handler", None, handler, graph.types_mut())
        .context("reading the handler component")?;
    let entrance = Package::from_bytes("cmq:entrance", None, entrance, graph.types_mut())
        .context("reading the entrance component")?;
    let http = graph.types()[entrance.ty()]
        .exports
        .keys()
        .find(|name| name.starts_with("wasi:http/incoming-handler@"))
        .context("the entrance exports no wasi:http/incoming-handler")?
        .clone();
    let handler = graph.register_package(handler)?;
    let entrance = graph.register_package(entrance)?;

    let handler = graph.instantiate(handler);
    let decisions = graph.alias_instance_export(handler, HANDLER)?;
    let entrance = graph.instantiate(entrance);
    graph.set_instantiation_argument(entrance, HANDLER, decisions)?;
    let requests = graph.alias_instance_export(entrance, &http)?;
    graph.export(decisions, HANDLER)?;
    graph.export(requests, &http)?;
    Ok(graph.encode(EncodeOptions::default())?)
}
