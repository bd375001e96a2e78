// The admin upload page (src/hybridvideo/api/static/admin/upload.html) over tus.
//
// Why tus-js-client: it already does what a large upload needs and we would otherwise
// re-implement: resuming after a dropped connection (retryDelays: HEAD, then PATCH from
// the server's offset), resuming after a page reload (a fingerprint of the file kept in
// localStorage with its upload URL), pause/resume, and progress events.
//
// The page then asks GET /api/v1/uploads/{id} what became of the upload (probe, archive,
// catalog) and shows the video id or the error message. Server-provided text is only
// ever put in textContent, never parsed as HTML.
//
// Bundled by `npm run build` (esbuild, iife, minified) into the Python package's
// static/admin/upload.js; the page's Content-Security-Policy allows scripts from self only.

import * as tus from 'tus-js-client'

const TOKEN_KEY = 'hybridvideo.upload.token'
// Each PATCH carries at most this much: proxies in front of the server (Cloudflare's
// proxy accepts 100 MB bodies) then never see an oversized request, and a retry re-sends
// at most one chunk's worth of unconfirmed bytes.
const CHUNK_SIZE = 50 * 1024 * 1024
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000]
// Statuses a retry cannot fix: a refused token, a gone upload, a file over the limit.
const FINAL_STATUSES = new Set([400, 401, 403, 404, 410, 413, 415])
const SPEED_WINDOW_MS = 3000
const POLL_FIRST_MS = 1000
const POLL_MAX_MS = 5000
const POLL_NOT_FOUND_LIMIT = 10

const $ = (id) => document.getElementById(id)

function formatBytes (n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} kB`
  return `${n} B`
}

function titleFromName (name) {
  const dot = name.lastIndexOf('.')
  return (dot > 0 ? name.slice(0, dot) : name).replace(/[_]+/g, ' ').trim()
}

// The last path segment of the upload URL is the upload id (…/files/<id>).
function uploadIdFrom (url) {
  const parts = new URL(url, document.baseURI).pathname.split('/').filter(Boolean)
  return parts[parts.length - 1]
}

function statusOf (err) {
  const res = err && err.originalResponse
  return res ? res.getStatus() : 0
}

// A message for people, not tus-js-client's long technical one (which goes to the console).
function describeError (err) {
  const status = statusOf(err)
  if (status === 401 || status === 403) return `the server refused the token (HTTP ${status})`
  if (status === 413) return 'the file is larger than the server accepts (HTTP 413)'
  if (status === 404 || status === 410) return `the upload no longer exists on the server (HTTP ${status})`
  if (status === 0) return 'the server could not be reached; check the connection, then press Resume'
  const body = (err.originalResponse.getBody() || '').toString().trim().slice(0, 200)
  return body ? `the server answered HTTP ${status}: ${body}` : `the server answered HTTP ${status}`
}

function shouldRetry (err) {
  const status = statusOf(err)
  if (FINAL_STATUSES.has(status)) return false
  // tus-js-client's own rule: anything but a 4xx, plus 409 (offset moved) and 423 (locked).
  return status < 400 || status >= 500 || status === 409 || status === 423
}

class SpeedMeter {
  constructor () { this.reset() }
  reset () { this.samples = [] }
  // Bytes per second over the last few seconds (0 until there are two samples).
  add (bytes) {
    const now = performance.now()
    this.samples.push([now, bytes])
    while (this.samples.length > 2 && now - this.samples[0][0] > SPEED_WINDOW_MS) this.samples.shift()
    const [t0, b0] = this.samples[0]
    return now > t0 ? ((bytes - b0) * 1000) / (now - t0) : 0
  }
}

function init () {
  const app = $('app')
  const endpoint = new URL(app.dataset.endpoint, document.baseURI).href
  const statusBase = new URL(app.dataset.status, document.baseURI).href
  const el = {
    form: $('upload-form'),
    token: $('token'),
    collection: $('collection'),
    title: $('title'),
    file: $('file'),
    dropzone: $('dropzone'),
    chosen: $('chosen'),
    previous: $('previous'),
    start: $('start'),
    pause: $('pause'),
    resume: $('resume'),
    progress: $('progress'),
    percent: $('percent'),
    speed: $('speed'),
    status: $('status'),
    result: $('result')
  }
  const speed = new SpeedMeter()
  let chosenFile = null
  let upload = null
  let running = false

  function setStatus (text, isError = false) {
    el.status.textContent = text
    el.status.classList.toggle('error', isError)
  }

  function setResult (text, kind) {
    el.result.textContent = text
    el.result.className = `result ${kind || ''}`.trim()
  }

  // The newcomer path: the reference player, same tab, so it finds the admin token this
  // page keeps in sessionStorage (the player uses it when it has no viewer JWT). A video
  // still being delivered makes the player wait and start by itself.
  function addPlayLink (videoId) {
    const link = $('play')
    link.href = new URL(`../watch/${encodeURIComponent(videoId)}`, document.baseURI).pathname
    link.parentElement.hidden = false
  }

  function setButtons () {
    el.start.disabled = running || !chosenFile
    el.pause.disabled = !running
    el.resume.disabled = running || !upload || !upload.url
  }

  function showProgress (sent, total) {
    const pct = total > 0 ? (sent / total) * 100 : 0
    el.progress.value = pct
    el.percent.textContent = sent >= total && total > 0 ? '100 %' : `${Math.floor(pct)} %`
    el.progress.setAttribute('aria-valuetext', `${Math.floor(pct)} percent, ${formatBytes(sent)} of ${formatBytes(total)}`)
  }

  function showSpeed (bytesPerSecond) {
    el.speed.textContent = `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`
  }

  function chooseFile (file) {
    if (!file) return
    chosenFile = file
    el.chosen.textContent = `${file.name} (${formatBytes(file.size)})`
    if (!el.title.value.trim()) el.title.value = titleFromName(file.name)
    upload = null
    showProgress(0, file.size)
    setResult('')
    setStatus('Ready to upload.')
    setButtons()
  }

  // The token lives in this tab's session storage: it survives a reload (to resume) but
  // not the tab, and it is never written to disk by the page.
  el.token.value = sessionStorage.getItem(TOKEN_KEY) || ''
  el.token.addEventListener('input', () => sessionStorage.setItem(TOKEN_KEY, el.token.value))

  el.file.addEventListener('change', () => chooseFile(el.file.files[0]))
  el.dropzone.addEventListener('dragover', (event) => {
    event.preventDefault()
    el.dropzone.classList.add('over')
  })
  el.dropzone.addEventListener('dragleave', () => el.dropzone.classList.remove('over'))
  el.dropzone.addEventListener('drop', (event) => {
    event.preventDefault()
    el.dropzone.classList.remove('over')
    const files = event.dataTransfer && event.dataTransfer.files
    if (files && files.length > 0) chooseFile(files[0])
  })

  async function listUnfinished () {
    try {
      const stored = await tus.defaultOptions.urlStorage.findAllUploads()
      const names = stored
        .map((entry) => (entry.metadata && entry.metadata.filename) || 'a file')
        .filter((name, i, all) => all.indexOf(name) === i)
      if (names.length > 0) {
        el.previous.textContent = `Unfinished upload in this browser: ${names.join(', ')}. ` +
          'Choose the same file again to resume it where it stopped.'
        el.previous.hidden = false
      }
    } catch (err) {
      console.warn('could not read the stored uploads', err)
    }
  }

  async function pollOutcome (uploadId, token) {
    let delay = POLL_FIRST_MS
    let notFound = 0
    for (;;) {
      let response = null
      try {
        response = await fetch(statusBase + encodeURIComponent(uploadId), {
          headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
          cache: 'no-store'
        })
      } catch (err) {
        console.warn('status request failed; trying again', err)
      }
      if (response && response.ok) {
        const body = await response.json()
        if (body.state === 'ready') {
          const videoId = body.videoId || ''
          setStatus('Ready.')
          setResult(`Video ${videoId}`, 'ok')
          el.result.dataset.videoId = videoId
          if (videoId) addPlayLink(videoId)
          return
        }
        if (body.state === 'failed') {
          const message = (body.error && body.error.message) || 'unknown error'
          setStatus(`Failed: ${message}`, true)
          setResult(message, 'error')
          return
        }
        setStatus(body.state === 'processing' ? 'Uploaded; processing…' : 'Uploaded; waiting for the server…')
      } else if (response && (response.status === 401 || response.status === 403)) {
        setStatus(`Uploaded, but the server refused the token when asked for the outcome (HTTP ${response.status}).`, true)
        return
      } else if (response && response.status === 404 && ++notFound >= POLL_NOT_FOUND_LIMIT) {
        setStatus('Uploaded, but the server does not know this upload any more.', true)
        return
      }
      await new Promise((resolve) => setTimeout(resolve, delay))
      delay = Math.min(delay * 1.5, POLL_MAX_MS)
    }
  }

  async function startUpload () {
    const token = el.token.value.trim()
    if (!token) {
      setStatus('Enter the access token first.', true)
      el.token.focus()
      return
    }
    if (!chosenFile) return
    const file = chosenFile
    $('play').parentElement.hidden = true
    const metadata = {
      filename: file.name,
      filetype: file.type || 'application/octet-stream'
    }
    const title = el.title.value.trim()
    const collection = el.collection.value.trim()
    if (title) metadata.title = title
    if (collection) metadata.collection = collection

    upload = new tus.Upload(file, {
      endpoint,
      headers: { Authorization: `Bearer ${token}` },
      metadata,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      removeFingerprintOnSuccess: true,
      onShouldRetry: shouldRetry,
      onProgress (sent, total) {
        showProgress(sent, total)
        showSpeed(speed.add(sent))
      },
      onError (err) {
        console.error(err)
        running = false
        setStatus(`Upload stopped: ${describeError(err)}.`, true)
        setButtons()
      },
      onSuccess () {
        running = false
        showProgress(file.size, file.size)
        setButtons()
        el.resume.disabled = true
        el.previous.hidden = true
        setStatus('Uploaded; waiting for the server…')
        pollOutcome(uploadIdFrom(upload.url), token)
      }
    })

    const previous = await upload.findPreviousUploads()
    if (previous.length > 0) {
      previous.sort((a, b) => (a.creationTime < b.creationTime ? 1 : -1))
      upload.resumeFromPreviousUpload(previous[0])
      setStatus('Resuming the earlier upload of this file…')
    } else {
      setStatus('Uploading…')
    }
    running = true
    speed.reset()
    setResult('')
    setButtons()
    upload.start()
  }

  el.form.addEventListener('submit', (event) => {
    event.preventDefault()
    startUpload().catch((err) => {
      console.error(err)
      running = false
      setStatus(`Upload could not start: ${err.message}`, true)
      setButtons()
    })
  })

  el.pause.addEventListener('click', () => {
    if (!upload || !running) return
    running = false
    upload.abort().then(() => {
      setStatus(`Paused at ${el.percent.textContent}.`)
      el.speed.textContent = '–'
      setButtons()
    })
    setButtons()
  })

  el.resume.addEventListener('click', () => {
    if (!upload || running) return
    running = true
    speed.reset()
    setStatus('Resuming…')
    setButtons()
    // start() after abort() asks the server for its offset (HEAD) and goes on from there.
    upload.start()
  })

  listUnfinished()
  setButtons()
  // Tests (and people with slow machines) can tell the page is wired up.
  app.dataset.ready = 'true'
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', init)
} else {
  init()
}
