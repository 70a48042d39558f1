// hookql's GraphiQL page: an API-key field whose key goes, as `Authorization: Bearer <key>`, on
// every HTTP request and into the websocket's connection_init payload (graphql-transport-ws),
// and is remembered in this browser's localStorage. Served by hookql (app/web/graphiql.py) with a
// Content-Security-Policy of 'self': this file must stay external (no inline script).
"use strict";
(function () {
  var STORAGE_KEY = "hookql.graphiql.apiKey";
  var endpoint = window.location.origin + window.location.pathname;
  var socketEndpoint = endpoint.replace(/^http/, "ws");
  var form = document.getElementById("hookql-key");
  var input = document.getElementById("hookql-api-key");
  var status = document.getElementById("hookql-key-status");

  function storedKey() {
    try {
      return window.localStorage.getItem(STORAGE_KEY) || "";
    } catch (e) {
      return ""; // storage disabled: the key lasts as long as the page
    }
  }

  function remember(key) {
    try {
      if (key) window.localStorage.setItem(STORAGE_KEY, key);
      else window.localStorage.removeItem(STORAGE_KEY);
    } catch (e) {
      /* storage disabled */
    }
  }

  // A pasted "Bearer hk_…" is the same key.
  function normalise(raw) {
    return raw.trim().replace(/^bearer\s+/i, "");
  }

  function fetcherFor(key) {
    var auth = key ? { Authorization: "Bearer " + key } : {};
    return GraphiQL.createFetcher({
      url: endpoint,
      subscriptionUrl: socketEndpoint,
      headers: auth,
      wsConnectionParams: auth,
    });
  }

  function App() {
    var state = React.useState(storedKey());
    var key = state[0];
    var setKey = state[1];
    // A new fetcher when the key changes: GraphiQL then loads the schema again with the key.
    var fetcher = React.useMemo(function () {
      return fetcherFor(key);
    }, [key]);
    React.useEffect(function () {
      function onSubmit(event) {
        event.preventDefault();
        var next = normalise(input.value);
        remember(next);
        setKey(next);
      }
      function onForget() {
        input.value = "";
        remember("");
        setKey("");
      }
      form.addEventListener("submit", onSubmit);
      document.getElementById("hookql-forget-key").addEventListener("click", onForget);
      return function () {
        form.removeEventListener("submit", onSubmit);
        document.getElementById("hookql-forget-key").removeEventListener("click", onForget);
      };
    }, []);
    React.useEffect(
      function () {
        status.textContent = key
          ? "key set: every request sends it as Authorization: Bearer …"
          : "no key: paste an API key to run queries";
        status.dataset.keySet = key ? "yes" : "no";
      },
      [key],
    );
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false,
    });
  }

  input.value = storedKey();
  ReactDOM.createRoot(document.getElementById("graphiql")).render(React.createElement(App));
})();
