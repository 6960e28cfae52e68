//! What the console, the admin listener and the commands read of a receiver: its
//! routes, its store, its metrics and feed, and the first route's guest for the
//! commands that serve one component.

use super::Receiver;
use crate::options::ServeAs;
use crate::push::feed::Feed;
use crate::route::LoadedRoute;
use crate::sandbox::bindings::{Decision, Message};
use crate::sandbox::guest_fault::GuestFault;
use crate::sandbox::loading::Loaded;
use crate::store::Store;

impl Receiver {
    /// What each route serves now, in path order.
    pub fn routes(&self) -> Vec<LoadedRoute> {
        self.routes.get().report()
    }

    /// Runs `message` through a fresh instance of the first route's guest, exactly as
    /// for a push, and returns the guest's decision: for tools and benchmarks that have
    /// a message and no HTTP request. The message-in-flight cap does not apply.
    pub async fn handle_on_first_route(
        &self,
        message: cmq_message::Message,
    ) -> Result<Decision, GuestFault> {
        let routes = self.routes.get();
        let route = routes.first();
        route.guest.handle(Message::from(message)).await.0
    }

    /// The delivery store, if the receiver keeps one.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// The first route's component compiled to native code for this machine and this
    /// cmq-host: what `cmq-host compile` writes to a `.cwasm`, which
    /// [`Receiver::load`] loads without compiling.
    pub fn first_route_precompiled(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.routes.get().first().guest.serialize()?)
    }

    /// Where the first route's native code came from: compiled at this start, the
    /// compile cache, or a `.cwasm`.
    pub fn first_route_loaded(&self) -> Loaded {
        self.routes.get().first().guest.loaded()
    }

    /// The interface the first route's component is served through.
    pub fn first_route_serves(&self) -> ServeAs {
        self.routes.get().first().guest.serves()
    }

    /// The metrics in Prometheus' text format. With a store, its files and its
    /// dead-letter entries are read now (a count that fails leaves the last one read).
    pub async fn metrics_text(&self) -> String {
        if let Some(store) = &self.store {
            if let Some(files) = store.files() {
                self.metrics.store_files(&files);
            }
            self.metrics.uncounted_lost(store.uncounted_lost());
            match store.dead_letter_counts().await {
                Ok(counts) => self.metrics.dead_letters_waiting(&counts),
                Err(err) => tracing::warn!("the dead letters could not be counted: {err}"),
            }
        }
        self.metrics.encode()
    }

    /// The feed of decisions as they happen.
    pub(crate) fn feed(&self) -> &Feed {
        &self.feed
    }
}
