#!/bin/sh
# Refresh the GraphiQL assets that hookql serves at /graphiql/… (app/web/static/graphiql/):
# the published npm tarballs of GraphiQL and React, unchanged, with their LICENSE files.
# Needs `npm` and network access; run from the repository root, then update the versions and
# checksums in app/web/static/graphiql/README.md (the script prints them) and run the browser test
# (python -m pytest -q tests/browser/test_graphiql_chromium.py).
#
#   scripts/refresh-graphiql.sh [GRAPHIQL_VERSION] [REACT_VERSION]
#
# GraphiQL 4.x is the last line that publishes a browser (UMD) build, `graphiql.min.js`, which
# runs from <script> tags without a bundler and includes graphql-ws for subscriptions;
# GraphiQL 5 ships ES modules only (for a bundler). React 18 is the last line with UMD builds.
set -eu
GRAPHIQL_VERSION=${1:-4.1.2}
REACT_VERSION=${2:-18.3.1}
DEST=app/web/static/graphiql
[ -d "$DEST" ] || { echo "run from the repository root ($DEST not found)" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >/dev/null)
for package in "graphiql-$GRAPHIQL_VERSION" "react-$REACT_VERSION" "react-dom-$REACT_VERSION"; do
    mkdir -p "$WORK/$package" && tar xzf "$WORK/$package.tgz" -C "$WORK/$package"
done
cp "$WORK/graphiql-$GRAPHIQL_VERSION/package/graphiql.min.js" "$DEST/graphiql.min.js"
cp "$WORK/graphiql-$GRAPHIQL_VERSION/package/graphiql.min.css" "$DEST/graphiql.min.css"
cp "$WORK/graphiql-$GRAPHIQL_VERSION/package/LICENSE" "$DEST/LICENSE.graphiql"
cp "$WORK/react-$REACT_VERSION/package/umd/react.production.min.js" "$DEST/react.production.min.js"
cp "$WORK/react-$REACT_VERSION/package/LICENSE" "$DEST/LICENSE.react"
cp "$WORK/react-dom-$REACT_VERSION/package/umd/react-dom.production.min.js" "$DEST/react-dom.production.min.js"
cp "$WORK/react-dom-$REACT_VERSION/package/LICENSE" "$DEST/LICENSE.react-dom"
echo "graphiql $GRAPHIQL_VERSION, react $REACT_VERSION, react-dom $REACT_VERSION"
(cd "$DEST" && sha256sum graphiql.min.js graphiql.min.css react.production.min.js react-dom.production.min.js)
