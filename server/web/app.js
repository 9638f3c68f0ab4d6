// Iris's web app: chat over /v1/chat/completions, the live view over the /v1/realtime WebSocket
// (docs/live.md) and document questions over /v1/documents/qa. It talks to this server only, and
// builds every element from text (never innerHTML), so an answer cannot inject markup.

const $ = (sel) => document.querySelector(sel);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

// ---------------------------------------------------------------------------------------------
// The API key and requests

const keyStore = () => (localStorage.getItem('iris.key') !== null ? localStorage : sessionStorage);
const apiKey = () => keyStore().getItem('iris.key') || '';

function say(text, bad = false) {
  const s = $('#status');
  s.textContent = text;
  s.classList.toggle('bad', bad);
}

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: 'Bearer ' + key } : extra;
}

// A request to the API; throws an Error with the server's message for a non-2xx answer.
async function api(path, init = {}) {
  const res = await fetch(path, { ...init, headers: authHeaders(init.headers) });
  if (res.ok) return res;
  let message = `HTTP ${res.status}`;
  try { message = (await res.json()).error.message || message; } catch { /* not JSON */ }
  if (res.status === 401) {
    $('#settings').open = true;
    message = 'the server needs an API key: enter it above';
  }
  const e = new Error(message);
  e.status = res.status;
  throw e;
}

let modelId = 'iris';

async function connect() {
  try {
    const models = await (await api('/v1/models')).json();
    modelId = models.data[0].id;
    say(`Connected to ${modelId}.`);
    return true;
  } catch (e) {
    say(e.message, true);
    return false;
  }
}

$('#key').value = apiKey();
$('#remember').checked = localStorage.getItem('iris.key') !== null;
$('#key-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  localStorage.removeItem('iris.key');
  sessionStorage.removeItem('iris.key');
  ($('#remember').checked ? localStorage : sessionStorage).setItem('iris.key', $('#key').value.trim());
  $('#settings').open = false;
  connect();
});

// ---------------------------------------------------------------------------------------------
// Tabs: arrow keys move between them, as in every tab list.

const tabs = [...document.querySelectorAll('[role=tab]')];
function showTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute('aria-selected', on);
    t.tabIndex = on ? 0 : -1;
    $('#' + t.getAttribute('aria-controls')).hidden = !on;
  }
  tab.focus();
  if (tab.id === 'tab-live' && !$('#timeline').childElementCount) showRecent();
}
for (const t of tabs) {
  t.addEventListener('click', () => showTab(t));
  t.addEventListener('keydown', (ev) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[ev.key];
    if (step) showTab(tabs[(tabs.indexOf(t) + step + tabs.length) % tabs.length]);
  });
}

// ---------------------------------------------------------------------------------------------
// Markdown, as the model writes it: paragraphs, headings, lists, code, emphasis and links.

function markdown(target, text) {
  target.replaceChildren();
  const lines = text.split('\n');
  const special = /^(```|#{1,6}\s|\s*([-*+]|\d+[.)])\s)/;
  let list = null;
  for (let i = 0; i < lines.length;) {
    const line = lines[i];
    if (line.startsWith('```')) {
      const body = [];
      for (++i; i < lines.length && !lines[i].startsWith('```'); ++i) body.push(lines[i]);
      ++i;
      const pre = el('pre');
      pre.append(el('code', body.join('\n')));
      target.append(pre);
      list = null;
      continue;
    }
    const head = line.match(/^(#{1,6})\s+(.*)/);
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)/);
    if (head) {
      target.append(inline(el('h' + Math.min(6, head[1].length + 2)), head[2]));
      list = null;
      ++i;
    } else if (item) {
      const tag = /\d/.test(item[1]) ? 'OL' : 'UL';
      if (!list || list.tagName !== tag) target.append((list = el(tag)));
      list.append(inline(el('li'), item[2]));
      ++i;
    } else if (!line.trim()) {
      list = null;
      ++i;
    } else {
      const para = [];
      while (i < lines.length && lines[i].trim() && !special.test(lines[i])) para.push(lines[i++]);
      target.append(inline(el('p'), para.join('\n')));
      list = null;
    }
  }
}

function inline(target, text) {
  const re = /(`[^`]+`)|(\*\*[^*]+\*\*)|(\*[^*\s][^*]*\*)|\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g;
  let last = 0;
  for (let m; (m = re.exec(text));) {
    target.append(text.slice(last, m.index));
    if (m[1]) target.append(el('code', m[1].slice(1, -1)));
    else if (m[2]) target.append(el('strong', m[2].slice(2, -2)));
    else if (m[3]) target.append(el('em', m[3].slice(1, -1)));
    else {
      const a = el('a', m[4]);
      a.href = m[5];
      a.rel = 'noopener noreferrer';
      a.target = '_blank';
      target.append(a);
    }
    last = re.lastIndex;
  }
  target.append(text.slice(last));
  return target;
}

// ---------------------------------------------------------------------------------------------
// Chat

const chat = { messages: [], images: [], abort: null };

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

async function attach(files) {
  for (const f of files) {
    if (!f.type.startsWith('image/')) continue;
    chat.images.push(await readAsDataURL(f));
  }
  showAttached();
}

function showAttached() {
  const list = $('#chat-images');
  list.replaceChildren();
  chat.images.forEach((url, i) => {
    const li = el('li');
    const img = el('img');
    img.src = url;
    img.alt = `Attached image ${i + 1}`;
    const remove = el('button', '×');
    remove.type = 'button';
    remove.setAttribute('aria-label', `Remove image ${i + 1}`);
    remove.onclick = () => { chat.images.splice(i, 1); showAttached(); };
    li.append(img, remove);
    list.append(li);
  });
}

// The events of a text/event-stream response, parsed.
async function* serverEvents(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    for (let end; (end = buf.indexOf('\n\n')) >= 0;) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data: ')) continue;
        if (line === 'data: [DONE]') return;
        yield JSON.parse(line.slice(6));
      }
    }
  }
}

async function sendChat() {
  const text = $('#chat-input').value.trim();
  if ((!text && !chat.images.length) || chat.abort) return;
  const content = [{ type: 'text', text }];
  for (const url of chat.images) content.push({ type: 'image_url', image_url: { url } });
  const user = el('li', text, 'user');
  for (const url of chat.images) {
    const img = el('img');
    img.src = url;
    img.alt = 'Attached image';
    user.append(el('br'), img);
  }
  const answer = el('li', '', 'answer');
  $('#chat-log').append(user, answer);
  chat.messages.push({ role: 'user', content });
  chat.images = [];
  showAttached();
  $('#chat-input').value = '';

  chat.abort = new AbortController();
  $('#chat-stop').disabled = false;
  $('#chat-send').disabled = true;
  say('Answering…');
  let reply = '';
  const started = performance.now();
  try {
    const res = await api('/v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: modelId, messages: chat.messages, stream: true }),
      signal: chat.abort.signal,
    });
    let first = 0;
    for await (const ev of serverEvents(res)) {
      if (ev.error) throw new Error(ev.error.message);
      const delta = ev.choices?.[0]?.delta?.content;
      if (!delta) continue;
      first ||= performance.now();
      reply += delta;
      markdown(answer, reply);
      answer.scrollIntoView({ block: 'nearest' });
    }
    say(`Answered: first word after ${Math.round(first - started)} ms, all after ${Math.round(performance.now() - started)} ms.`);
  } catch (e) {
    if (e.name === 'AbortError') say('Stopped.');
    else {
      say(e.message, true);
      answer.append(el('p', e.message, 'bad'));
    }
  } finally {
    chat.abort = null;
    $('#chat-stop').disabled = true;
    $('#chat-send').disabled = false;
  }
  if (reply) chat.messages.push({ role: 'assistant', content: reply });
  else chat.messages.pop();
}

$('#chat-form').addEventListener('submit', (ev) => { ev.preventDefault(); sendChat(); });
$('#chat-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendChat();
  }
});
$('#chat-input').addEventListener('paste', (ev) => {
  const files = [...ev.clipboardData.files];
  if (files.length) {
    ev.preventDefault();
    attach(files);
  }
});
$('#chat-file').addEventListener('change', (ev) => { attach([...ev.target.files]); ev.target.value = ''; });
$('#chat-stop').addEventListener('click', () => chat.abort?.abort());
$('#chat-new').addEventListener('click', () => {
  chat.abort?.abort();
  chat.messages = [];
  $('#chat-log').replaceChildren();
  $('#chat-input').focus();
});
document.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') chat.abort?.abort(); });

// ---------------------------------------------------------------------------------------------
// Live: the camera and microphone streamed to /v1/realtime, what Iris heard and answered, and
// what it remembers.

const kFps = 2; // the server keeps one frame a second; two leave it a choice
const live = {
  ws: null, stream: null, mic: null, player: null, playAt: 0, timer: 0,
  sent: 0, audioMs: 0, answers: new Map(), stopping: false,
};

function base64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function unbase64(text) {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; ++i) bytes[i] = s.charCodeAt(i);
  return bytes;
}

function setLive(state) {
  document.body.dataset.live = state;
  const on = state === 'connecting' || state === 'streaming';
  $('#live-start').disabled = on;
  $('#live-stop').disabled = !on;
  $('#live-question').disabled = $('#live-ask-button').disabled = state !== 'streaming';
  $('#wake').disabled = on;
}

function send(event) {
  if (live.ws?.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(event));
}

async function startLive() {
  if (!navigator.mediaDevices?.getUserMedia) {
    say('The browser offers the camera only to secure pages: open Iris at http://localhost:PORT (or over https).', true);
    return;
  }
  // Made during the click, so that the browser lets it play the spoken answers.
  live.player ||= new AudioContext();
  live.player.resume();
  setLive('connecting');
  say('Asking for the camera and microphone…');
  if (!(await connect())) return setLive('idle');
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
  } catch (e) {
    say(`The camera and microphone are needed for a live session (${e.message}).`, true);
    return setLive('idle');
  }
  $('#preview').srcObject = live.stream;
  const protocols = ['realtime'];
  if (apiKey()) protocols.push('openai-insecure-api-key.' + apiKey());
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/realtime`, protocols);
  live.ws = ws;
  ws.onopen = async () => {
    send({ type: 'session.update', session: { wake_phrase: $('#wake').value, output_audio: $('#speak').checked } });
    try {
      await startMicrophone();
    } catch (e) {
      say(`The microphone could not be read: ${e.message}`, true);
      return ws.close(1000);
    }
    live.timer = setInterval(sendFrame, 1000 / kFps);
    setLive('streaming');
    say(`Streaming. Say “${$('#wake').value}” and a question, or type one.`);
  };
  ws.onmessage = (ev) => onLiveEvent(JSON.parse(ev.data));
  ws.onclose = (ev) => {
    stopMedia();
    setLive('idle');
    if (ev.code === 1000 && live.stopping) say('Live session ended.');
    else if (ev.code === 1006) say('The server refused or lost the live session: is it started with --live, and is this page’s origin allowed?', true);
    else say(`Live session closed (${ev.code}${ev.reason ? ': ' + ev.reason : ''}).`, ev.code !== 1000);
    live.stopping = false;
  };
}

async function startMicrophone() {
  // The context runs at 16 kHz, so the browser resamples the microphone as the server wants it.
  const ctx = new AudioContext({ sampleRate: 16000 });
  await ctx.audioWorklet.addModule('/web/mic.js');
  const node = new AudioWorkletNode(ctx, 'pcm16');
  node.port.onmessage = (ev) => {
    const pcm = new Uint8Array(ev.data);
    live.audioMs += pcm.length / 32;
    send({ type: 'input_audio_buffer.append', audio: base64(pcm) });
  };
  ctx.createMediaStreamSource(live.stream).connect(node);
  node.connect(ctx.destination); // silent: the worklet writes no output, but is pulled
  live.mic = ctx;
}

const canvas = document.createElement('canvas');
function sendFrame() {
  const video = $('#preview');
  // A socket more than a second of frames behind skips a frame here rather than queue it.
  if (!video.videoWidth || live.ws.bufferedAmount > 256 * 1024) return;
  const scale = Math.min(1, 640 / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
  canvas.toBlob(async (blob) => {
    if (!blob) return;
    send({ type: 'input_video_frame.append', image: base64(new Uint8Array(await blob.arrayBuffer())) });
    $('#stat-sent').textContent = ++live.sent;
  }, 'image/jpeg', 0.8);
}

function stopMedia() {
  clearInterval(live.timer);
  live.mic?.close();
  live.mic = null;
  for (const t of live.stream?.getTracks() ?? []) t.stop();
  live.stream = null;
  $('#preview').srcObject = null;
  $('#hearing').textContent = '';
}

function stopLive() {
  live.stopping = true;
  live.ws?.close(1000);
}

// Plays a sentence of a spoken answer (PCM16) after the ones before it; returns its length in ms.
function play(pcmBase64, rate) {
  const bytes = unbase64(pcmBase64);
  const samples = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
  if (!samples.length) return 0;
  const buffer = live.player.createBuffer(1, samples.length, rate);
  const ch = buffer.getChannelData(0);
  for (let i = 0; i < samples.length; ++i) ch[i] = samples[i] / 32768;
  const src = live.player.createBufferSource();
  src.buffer = buffer;
  src.connect(live.player.destination);
  const at = Math.max(live.player.currentTime, live.playAt);
  src.start(at);
  live.playAt = at + buffer.duration;
  return buffer.duration * 1000;
}

const clock = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

function logLive(text, cls) {
  const li = el('li', text, cls);
  $('#live-log').append(li);
  li.scrollIntoView({ block: 'nearest' });
  return li;
}

let outputRate = 22050;
function onLiveEvent(ev) {
  switch (ev.type) {
  case 'session.created':
    outputRate = ev.session.output_audio_format?.rate ?? outputRate;
    break;
  case 'input_audio_buffer.speech_started':
    $('#hearing').textContent = 'Hearing you…';
    break;
  case 'input_audio_buffer.speech_stopped':
    $('#hearing').textContent = '';
    break;
  case 'conversation.item.input_audio_transcription.completed': {
    const li = logLive(ev.transcript, 'heard');
    li.prepend(el('span', `Heard at ${clock(ev.t_start_us / 1e6)}`, 'meta'));
    break;
  }
  case 'memory.entry.created':
    // New entries join the newest ones, not the results of a search.
    if (timelineShowsRecent) {
      $('#timeline').prepend(timelineItem(ev.entry, ev.entry.t_start_us / 1e6, ev.entry.t_end_us / 1e6));
      $('#memory-note').textContent = 'The newest entries.';
    }
    break;
  case 'response.created': {
    const q = logLive(ev.response.question, 'question');
    q.prepend(el('span', ev.response.source === 'spoken' ? 'You said' : 'You asked', 'meta'));
    const a = logLive('', 'answer');
    a.dataset.id = ev.response.id;
    live.answers.set(ev.response.id, { li: a, text: '', audioMs: 0 });
    break;
  }
  case 'response.text.delta': {
    const a = live.answers.get(ev.response_id);
    if (!a) break;
    a.text += ev.delta;
    markdown(a.li, a.text);
    break;
  }
  case 'response.audio.delta': {
    const a = live.answers.get(ev.response_id);
    if (live.player && a) a.audioMs += play(ev.delta, outputRate);
    break;
  }
  case 'response.done': {
    const a = live.answers.get(ev.response.id);
    const ms = ev.response.latency_ms ?? {};
    if (a) {
      a.li.dataset.done = ev.response.status;
      if (ev.response.error) a.li.append(el('p', ev.response.error, 'bad'));
      const said = [];
      if (ms.first_text !== undefined) said.push(`first word after ${Math.round(ms.first_text)} ms`);
      if (ms.first_audio !== undefined) said.push(`first sound after ${Math.round(ms.first_audio)} ms`);
      if (a.audioMs) {
        a.li.dataset.audioMs = Math.round(a.audioMs);
        said.push(`spoken, ${(a.audioMs / 1000).toFixed(1)} s`);
      }
      if (said.length) a.li.append(el('span', said.join(' · '), 'meta'));
      live.answers.delete(ev.response.id);
    }
    if (ms.first_text !== undefined) {
      $('#stat-latency').textContent = `${Math.round(ms.first_text)} ms to text` +
        (ms.first_audio !== undefined ? `, ${Math.round(ms.first_audio)} ms to speech` : '');
    }
    break;
  }
  case 'session.stats':
    $('#stat-decoded').textContent = ev.frames.decoded;
    $('#stat-dropped').textContent = ev.frames.dropped;
    $('#stat-audio').textContent = `${Math.round(ev.audio.received_ms / 1000)} s` +
      (ev.audio.queued_ms > 1000 ? ` (${Math.round(ev.audio.queued_ms / 1000)} s waiting)` : '');
    break;
  case 'error':
    say(`Iris: ${ev.error.message}`, true);
    break;
  }
}

$('#live-start').addEventListener('click', startLive);
$('#live-stop').addEventListener('click', stopLive);
$('#live-ask').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('#live-question').value.trim();
  if (!text) return;
  send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text }] } });
  $('#live-question').value = '';
});

// ---------------------------------------------------------------------------------------------
// Memory: the newest entries, or those a search finds; key frames come with the key.

function timelineItem(entry, start, end) {
  const li = el('li');
  li.dataset.id = entry.id;
  const frames = el('div', undefined, 'frames');
  // A live session's entries name their key frames by URL; listed entries give times too.
  for (const [i, f] of (entry.key_frames ?? []).entries()) {
    const img = el('img');
    img.alt = f.time ? `Key frame at ${clock(f.time)}` : `Key frame ${i + 1}`;
    frames.append(img);
    api(f.url ?? f)
      .then((res) => res.blob())
      .then((blob) => { img.src = URL.createObjectURL(blob); img.onload = () => URL.revokeObjectURL(img.src); })
      .catch(() => { img.alt = 'Key frame not available'; });
  }
  const time = el('time', `${clock(start)} – ${clock(end)}`);
  time.dateTime = new Date(start * 1000).toISOString();
  li.append(frames, time, el('div', entry.caption, 'caption'));
  if (entry.transcript) li.append(el('div', `“${entry.transcript}”`, 'transcript'));
  return li;
}

let timelineShowsRecent = true;
function showEntries(entries, note) {
  $('#timeline').replaceChildren(...entries.map((e) => timelineItem(e, e.start, e.end)));
  $('#memory-note').textContent = note;
}

async function showRecent() {
  try {
    const list = await (await api('/v1/memory?limit=20')).json();
    timelineShowsRecent = true;
    showEntries(list.data, list.data.length ? 'The newest entries.' : 'Nothing remembered yet.');
  } catch (e) {
    $('#memory-note').textContent = e.status === 404 ? 'This server keeps no memory (start it with --db DIR).' : e.message;
  }
}

$('#memory-search').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const query = $('#memory-query').value.trim();
  if (!query) return showRecent();
  try {
    const res = await api('/v1/memory/search', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ query, k: 20 }),
    });
    const hits = (await res.json()).data;
    timelineShowsRecent = false;
    showEntries(hits, `${hits.length} ${hits.length === 1 ? 'entry' : 'entries'} for “${query}”, best first.`);
  } catch (e) {
    $('#memory-note').textContent = e.message;
  }
});
$('#memory-recent').addEventListener('click', showRecent);

// ---------------------------------------------------------------------------------------------
// Documents: a PDF or image, and a question about it.

let doc = null;
function chooseDocument(file) {
  if (!file) return;
  doc = file;
  $('#doc-name').textContent = `${file.name} (${Math.ceil(file.size / 1024)} KiB)`;
  $('#doc-question').focus();
}

const drop = $('#drop');
drop.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (ev) => {
  ev.preventDefault();
  drop.classList.remove('over');
  chooseDocument(ev.dataTransfer.files[0]);
});
drop.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); $('#doc-file').click(); }
});
$('#doc-file').addEventListener('change', (ev) => chooseDocument(ev.target.files[0]));

$('#doc-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const question = $('#doc-question').value.trim();
  const out = $('#doc-answer');
  if (!doc || !question) {
    out.replaceChildren(el('p', 'Choose a document and ask a question about it.', 'bad'));
    return;
  }
  const form = new FormData();
  form.append('file', doc);
  form.append('question', question);
  $('#doc-ask').disabled = true;
  out.replaceChildren(el('p', 'Reading the document…', 'meta'));
  try {
    const r = await (await api('/v1/documents/qa', { method: 'POST', body: form })).json();
    const answer = el('div', undefined, 'answer');
    markdown(answer, r.answer);
    const pages = r.pages.length ? `from page${r.pages.length > 1 ? 's' : ''} ${r.pages.join(', ')} of ${r.page_count}` : '';
    out.replaceChildren(answer, el('p', `${pages} · ${Math.round(r.timings.total_ms)} ms`, 'meta'));
  } catch (e) {
    out.replaceChildren(el('p', e.message, 'bad'));
  } finally {
    $('#doc-ask').disabled = false;
  }
});

setLive('idle');
connect();
