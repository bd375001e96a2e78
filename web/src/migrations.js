// The migration runs page (src/hybridvideo/api/static/admin/migrations.html).
//
// It reads GET /api/v1/migrations with the admin token, shows each run's state and counts
// by outcome, and, for the run chosen, its failed videos (GET .../{id}/items?outcome=failed).
// "Retry failed" POSTs .../{id}/retry: the server records a queued run of those videos and
// a worker runs it, so the page only has to keep refreshing while any run is queued or
// running. Server-provided text only ever goes into textContent, never parsed as HTML.
//
// Bundled by `npm run build` (esbuild, iife, minified) into the Python package's
// static/admin/migrations.js; the page's Content-Security-Policy allows scripts from self
// only, and no inline style (looks are classes in migrations.css).

// The upload page's key: a token typed on either page serves both in this tab.
const TOKEN_KEY = 'hybridvideo.upload.token'
const REFRESH_MS = 3000
const RUNS_PAGE = 50
const FAILURES_PAGE = 100
const ACTIVE = new Set(['queued', 'running'])
const OUTCOMES = ['copied', 'present', 'failed', 'deferred']

const $ = (id) => document.getElementById(id)

class ApiError extends Error {
  constructor (status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

function pad (n) { return String(n).padStart(2, '0') }

// Local time, to the second: runs are compared at a glance, not to the millisecond.
function formatTime (iso) {
  if (!iso) return '–'
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

// The run's filters as one line: only the ones it was given.
function describeFilters (filters) {
  if (!filters) return '–'
  const parts = []
  for (const [name, value] of Object.entries(filters)) {
    if (value === null || value === undefined) continue
    if (name === 'in_run' && Array.isArray(value)) {
      parts.push(`the ${value[1]} videos of run ${value[0]}`)
    } else {
      parts.push(`${name}: ${Array.isArray(value) ? value.join(', ') : value}`)
    }
  }
  return parts.length > 0 ? parts.join('; ') : 'all videos'
}

// An error answer is shown on the page; anything else (a bug, the network) also goes to
// the console for whoever debugs it.
function logUnexpected (err) {
  if (!(err instanceof ApiError)) console.error(err)
}

function cell (text, className) {
  const td = document.createElement('td')
  td.textContent = text
  if (className) td.className = className
  return td
}

function init () {
  const app = $('app')
  const base = new URL(app.dataset.api, document.baseURI).href.replace(/\/+$/, '')
  const el = {
    form: $('token-form'),
    token: $('token'),
    status: $('status'),
    runsBody: $('runs-body'),
    runsEmpty: $('runs-empty'),
    detail: $('detail'),
    detailTitle: $('detail-title'),
    detailState: $('detail-state'),
    detailFilters: $('detail-filters'),
    detailParent: $('detail-parent'),
    detailError: $('detail-error'),
    retry: $('retry'),
    retryStatus: $('retry-status'),
    failuresBody: $('failures-body'),
    failuresEmpty: $('failures-empty'),
    moreFailures: $('more-failures')
  }
  let runs = []
  let selected = null // the chosen run's id
  let current = null // the chosen run, as last read
  let newRunId = null // the run the last retry queued: marked in the table
  let failures = { runId: null, failed: -1, items: [], total: 0 }
  let timer = null
  let loading = false
  let retrying = false

  function setStatus (text, isError = false) {
    el.status.textContent = text
    el.status.classList.toggle('error', isError)
  }

  function setRetryStatus (text, kind) {
    el.retryStatus.textContent = text
    el.retryStatus.className = `result ${kind || ''}`.trim()
  }

  async function api (method, path) {
    const token = el.token.value.trim()
    const response = await fetch(base + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
      cache: 'no-store'
    })
    let body = null
    try {
      body = await response.json()
    } catch (err) {
      body = null
    }
    if (!response.ok) {
      const error = (body && body.error) || {}
      throw new ApiError(response.status, error.code || '', error.message || `HTTP ${response.status}`)
    }
    return body
  }

  function describeFailure (err) {
    if (err instanceof ApiError) {
      if (err.status === 401) return `the server refused the token (HTTP 401): ${err.message}`
      return `${err.message} (HTTP ${err.status})`
    }
    return 'the server could not be reached'
  }

  // A queued or running retry of this run, if the list shows one.
  function pendingRetry (run) {
    return runs.find((r) => r.parentId === run.id && ACTIVE.has(r.state)) || null
  }

  function renderRuns () {
    const rows = runs.map((run) => {
      const tr = document.createElement('tr')
      tr.dataset.runId = run.id
      tr.dataset.state = run.state
      tr.classList.toggle('selected', run.id === selected)
      tr.classList.toggle('new', run.id === newRunId)
      const first = document.createElement('td')
      const button = document.createElement('button')
      button.type = 'button'
      button.className = 'run-id'
      button.textContent = run.id.slice(0, 8)
      button.title = run.id
      button.setAttribute('aria-label', `Show run ${run.id}`)
      first.appendChild(button)
      tr.appendChild(first)
      const state = cell(run.state, `state state-${run.state}`)
      tr.appendChild(state)
      tr.appendChild(cell(formatTime(run.startedAt), 'started'))
      tr.appendChild(cell(formatTime(run.finishedAt), 'finished'))
      tr.appendChild(cell(String(run.total), 'num total'))
      for (const outcome of OUTCOMES) {
        const n = run.counts[outcome] || 0
        const td = cell(String(n), `num count-${outcome}`)
        if (n > 0) td.classList.add('nonzero')
        tr.appendChild(td)
      }
      tr.appendChild(cell(run.error || '', 'error-text'))
      tr.addEventListener('click', () => select(run.id))
      return tr
    })
    el.runsBody.replaceChildren(...rows)
    el.runsEmpty.hidden = runs.length > 0
  }

  function renderDetail (run) {
    el.detail.hidden = false
    el.detailTitle.textContent = `Run ${run.id}`
    el.detailState.textContent = run.state === run.recordedState
      ? run.state
      : `${run.state} (recorded as ${run.recordedState}; no heartbeat since ${formatTime(run.heartbeatAt)})`
    el.detailFilters.textContent = describeFilters(run.filters)
    if (run.parentId) {
      const link = document.createElement('button')
      link.type = 'button'
      link.className = 'run-id'
      link.textContent = run.parentId
      link.addEventListener('click', () => select(run.parentId))
      el.detailParent.replaceChildren(link)
    } else {
      el.detailParent.textContent = '–'
    }
    el.detailError.textContent = run.error || '–'
    const pending = pendingRetry(run)
    const failed = run.counts.failed || 0
    el.retry.disabled = retrying || failed === 0 || pending !== null
    el.retry.title = failed === 0
      ? 'This run has no failed videos.'
      : pending ? `Retry ${pending.id} is ${pending.state}.` : `Queue a run of the ${failed} failed videos.`
  }

  function renderFailures () {
    const rows = failures.items.map((item) => {
      const tr = document.createElement('tr')
      tr.dataset.videoId = item.videoId
      tr.appendChild(cell(item.videoId, 'mono video-id'))
      tr.appendChild(cell(item.title === null ? '(no longer in the catalog)' : item.title, 'title'))
      tr.appendChild(cell(item.code || '', 'mono code'))
      tr.appendChild(cell(item.message || '', 'message'))
      return tr
    })
    el.failuresBody.replaceChildren(...rows)
    el.failuresEmpty.hidden = failures.items.length > 0
    el.moreFailures.hidden = failures.items.length >= failures.total
  }

  async function loadFailures (run, more = false) {
    const offset = more ? failures.items.length : 0
    const page = await api('GET', `/${encodeURIComponent(run.id)}/items?outcome=failed` +
      `&limit=${FAILURES_PAGE}&offset=${offset}`)
    if (selected !== run.id) return // another run was chosen meanwhile
    const items = more ? failures.items.concat(page.items) : page.items
    failures = { runId: run.id, failed: run.counts.failed || 0, items, total: page.total }
    renderFailures()
  }

  async function select (runId) {
    selected = runId
    for (const tr of el.runsBody.children) tr.classList.toggle('selected', tr.dataset.runId === runId)
    setRetryStatus('')
    try {
      const run = runs.find((r) => r.id === runId) || await api('GET', `/${encodeURIComponent(runId)}`)
      if (selected !== runId) return
      current = run
      renderDetail(run)
      failures = { runId: null, failed: -1, items: [], total: 0 }
      renderFailures()
      await loadFailures(run)
    } catch (err) {
      logUnexpected(err)
      setStatus(`Could not load run ${runId}: ${describeFailure(err)}.`, true)
    }
  }

  function scheduleRefresh () {
    clearTimeout(timer)
    timer = null
    const active = runs.some((r) => ACTIVE.has(r.state))
    app.dataset.refreshing = String(active)
    if (active) timer = setTimeout(load, REFRESH_MS)
  }

  async function load () {
    if (loading) return
    const token = el.token.value.trim()
    if (!token) {
      setStatus('Enter the admin token first.', true)
      el.token.focus()
      return
    }
    loading = true
    try {
      const page = await api('GET', `?limit=${RUNS_PAGE}`)
      runs = page.items
      renderRuns()
      const shown = runs.length === 1 ? '1 run' : `${runs.length} runs`
      const active = runs.filter((r) => ACTIVE.has(r.state)).length
      setStatus(active > 0
        ? `${shown}; ${active} queued or running (refreshing every ${REFRESH_MS / 1000} s).`
        : `${shown}.`)
      const run = selected && runs.find((r) => r.id === selected)
      if (run) {
        current = run
        renderDetail(run)
        // Failures are read again only when the run's count of them moved.
        if (failures.runId !== run.id || failures.failed !== (run.counts.failed || 0)) {
          await loadFailures(run)
        }
      }
      app.dataset.loaded = String(Date.now())
      scheduleRefresh()
    } catch (err) {
      logUnexpected(err)
      setStatus(`Could not load the runs: ${describeFailure(err)}.`, true)
      clearTimeout(timer)
      // A refused token waits for a new one; a network hiccup is tried again.
      const refused = err instanceof ApiError && (err.status === 401 || err.status === 403)
      app.dataset.refreshing = String(!refused)
      timer = refused ? null : setTimeout(load, REFRESH_MS)
    } finally {
      loading = false
    }
  }

  async function retry () {
    const run = current
    if (!run || run.id !== selected) return
    retrying = true
    el.retry.disabled = true
    setRetryStatus('Queuing a retry…')
    try {
      const queued = await api('POST', `/${encodeURIComponent(run.id)}/retry`)
      newRunId = queued.id
      const n = queued.total === 1 ? '1 failed video' : `${queued.total} failed videos`
      setRetryStatus(`Queued run ${queued.id} to retry ${n}.`, 'ok')
      el.retryStatus.dataset.runId = queued.id
    } catch (err) {
      logUnexpected(err)
      setRetryStatus(`Retry refused: ${describeFailure(err)}.`, 'error')
    } finally {
      retrying = false
    }
    await load()
  }

  // The token lives in this tab's session storage: it survives a reload but not the tab,
  // and the page never writes it to disk.
  el.token.value = sessionStorage.getItem(TOKEN_KEY) || ''
  el.token.addEventListener('input', () => sessionStorage.setItem(TOKEN_KEY, el.token.value))
  el.form.addEventListener('submit', (event) => {
    event.preventDefault()
    sessionStorage.setItem(TOKEN_KEY, el.token.value)
    load()
  })
  el.retry.addEventListener('click', () => { retry() })
  el.moreFailures.addEventListener('click', () => {
    const run = current
    if (run && run.id === selected) {
      loadFailures(run, true).catch((err) => {
        logUnexpected(err)
        setStatus(`Could not load more failures: ${describeFailure(err)}.`, true)
      })
    }
  })

  if (el.token.value.trim()) load()
  // Tests (and people with slow machines) can tell the page is wired up.
  app.dataset.ready = 'true'
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', init)
} else {
  init()
}
