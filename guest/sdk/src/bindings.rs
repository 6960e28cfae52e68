//! The Rust bindings wit-bindgen generates from `wit/cmq-push.wit`, fenced here so
//! nothing else in the SDK depends on their shape. Handler authors never name them:
//! [`crate::export!`] reaches them through `$crate::bindings`.

wit_bindgen::generate!({
    // The one copy of the contract, at the repository root (the host binds it too),
    // reached through the crate's `wit` link so that the packaged crate carries it.
    path: "wit",
    world: "push-handler",
    // The handler crate, not this one, expands the export macro: it must be
    // `#[macro_export]` and find the bindings through `$crate`, wherever the author's
    // crate sits and whatever it calls this dependency.
    pub_export_macro: true,
    default_bindings_module: "$crate::bindings",
    // Keep the generated `export!` out of the way of this crate's own `export!`.
    export_macro_name: "export_push_handler",
});

/// `wasi:config/store`, for [`crate::config`]: `0.2.0-rc.1` (wasmtime 40 and later), or
/// with the `spin` feature `0.2.0-draft-2024-09-27` (Spin 3 and 4). The two differ in
/// their version only.
pub mod config {
    #[cfg(not(feature = "spin"))]
    wit_bindgen::generate!({
        path: "wit",
        world: "wasi:config/imports@0.2.0-rc.1",
    });
    #[cfg(not(feature = "spin"))]
    pub use self::wasi::config0_2_0_rc_1::store;
    #[cfg(feature = "spin")]
    wit_bindgen::generate!({
        path: "wit",
        world: "wasi:config/imports@0.2.0-draft-2024-09-27",
    });
    #[cfg(feature = "spin")]
    pub use self::wasi::config0_2_0_draft_2024_09_27::store;
}
