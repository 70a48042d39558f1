"""The delivery side: wake-ups (LISTEN), the producer (changes → events), the dispatcher (events →
attempts), the sweep of lapsed `hookql listen` holds, the runner that starts and stops them, and
`serve`'s engine child. Imports evaluation, transport, store and policy; never the API or the web
package."""
