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
