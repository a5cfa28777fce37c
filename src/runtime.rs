//! What the engine needs from the host it runs in, beyond the device: a turn for the host's
//! own work during a long computation. Natively that is nothing (the OS schedules threads);
//! in a browser the page repaints and handles input only when the WebAssembly code returns
//! to the event loop.

/// Gives the host a turn: a no-op natively; in a browser, resolves on the next macrotask
/// (`setTimeout(…, 0)`), after the page has had the chance to repaint.
pub async fn yield_now() {
    #[cfg(target_arch = "wasm32")]
    web::next_macrotask().await;
}

#[cfg(target_arch = "wasm32")]
mod web {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        // The global `setTimeout`, in a window and in a worker alike.
        #[wasm_bindgen(js_name = setTimeout)]
        fn set_timeout(callback: &js_sys::Function, millis: i32) -> JsValue;
    }

    pub(super) async fn next_macrotask() {
        let promise = js_sys::Promise::new(&mut |resolve, _reject| {
            set_timeout(&resolve, 0);
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}
