// The reference tus server for bench/ingest.py: @tus/server with its FileStore, as its
// README sets it up (nothing tuned), on 127.0.0.1.
//
// Usage: node bench/tus_node_server.mjs PORT DIR
// Prints "listening PORT" once it accepts connections; tus is served at /files.
//
// Note what it does not do, which our server does: FileStore pipes each PATCH body into
// an fs.WriteStream and never fsyncs (an answered offset can be lost with the page
// cache), and nothing hashes the bytes.

import { mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const web = path.join(here, '..', 'web', 'package.json')
const require = createRequire(web)
// Both packages ship ESM; resolve them from web/node_modules, then import by path.
const { Server } = await import(require.resolve('@tus/server'))
const { FileStore } = await import(require.resolve('@tus/file-store'))

const [port, directory] = process.argv.slice(2)
if (!port || !directory) {
  process.stderr.write('usage: node bench/tus_node_server.mjs PORT DIR\n')
  process.exit(2)
}
mkdirSync(directory, { recursive: true })
const server = new Server({ path: '/files', datastore: new FileStore({ directory }) })
const http = server.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  process.stdout.write(`listening ${port}\n`)
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => http.close(() => process.exit(0)))
}
