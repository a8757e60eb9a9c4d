#!/usr/bin/env node
/**
 * LibreChat's client stack, driven from the end-to-end tests.
 *
 * LibreChat itself cannot run here (it needs MongoDB), so this script builds the
 * chat model exactly the way LibreChat v0.8.x does and talks to the gateway through
 * it, in one of two shapes (`job.provider`):
 *  - "openai" (default): a `librechat.yaml` custom endpoint, LangChain's `ChatOpenAI`
 *    (@langchain/openai 1.5.8 on @langchain/core 1.2.8) over the `openai` 6.49.0 SDK;
 *  - "anthropic": the native Anthropic endpoint with `ANTHROPIC_REVERSE_PROXY` set to
 *    the gateway, LangChain's `ChatAnthropic` (@langchain/anthropic 1.5.2) over the
 *    `@anthropic-ai/sdk` 0.115.0 SDK: POST {baseURL}/v1/messages.
 * These are the versions @librechat/agents 3.9.x pins.
 *
 * Protocol: ONE JSON job on stdin, ONE JSON result line on stdout.
 *
 *   job    {baseURL, apiKey, model, userId, userEmail, conversationId,
 *           messages: [{role: "system"|"user"|"assistant", content}],
 *           mode: "chat" | "title", timeoutMs,
 *           provider?     "openai" (default) | "anthropic"
 *           maxTokens?    anthropic: the endpoint's "Max Output Tokens" (default 8192)
 *           thinking?, thinkingBudget?  anthropic: the "Thinking" switch (default on) and
 *                         its budget (default 2000), as LibreChat's Anthropic settings
 *           maxRetries?   LangChain retry budget; LibreChat leaves it unset (=> 6)
 *           titleFallback? false: no second title call after a failure (LibreChat makes one)
 *           headers?      header templates replacing the endpoint's `headers:` block}
 *   result {ok: true, content, chunks, textChunks, usage, responseHeaders, requests, statuses}
 *        | {ok: false, status, message, name, className, code?, type?, error?,
 *           content, chunks, textChunks (what streamed before the error),
 *           responseHeaders, requests, statuses}
 *
 * `requests` counts the HTTP attempts the client made (retries included) and
 * `statuses` lists their HTTP statuses (null: no response), so a test can tell one
 * request from a retried one. `responseHeaders` are those of the last attempt.
 * `name` is "HarnessTimeout" when timeoutMs ran out (the client was aborted).
 *
 * Where each setting comes from (LibreChat / @librechat/agents source):
 *  - packages/api/src/endpoints/custom/initialize.ts: `modelOptions = {...model_parameters,
 *    user: req.user.id}`, `reverseProxyUrl: baseURL`, `headers: endpointConfig.headers`.
 *  - packages/api/src/endpoints/openai/config.ts (getOpenAIConfig): `streaming = true`
 *    default; `configOptions.baseURL`, `configOptions.defaultHeaders = headers`.
 *  - packages/api/src/endpoints/openai/llm.ts (getOpenAILLMConfig): `llmConfig =
 *    {streaming, model, ...modelOptions}`, `llmConfig.apiKey = apiKey`; `modelKwargs`
 *    only when addParams/defaultParams add unknown keys (none here).
 *  - packages/api/src/agents/run.ts (createRun): headers resolved per request with
 *    `resolveHeaders({headers, user: createSafeUser(user), body: requestBody})`; for a
 *    custom endpoint (`provider === openAI && endpoint !== provider`)
 *    `llmConfig.streamUsage = false; llmConfig.usage = true` => no `stream_options`.
 *  - packages/api/src/utils/env.ts (resolveHeaders / encodeHeaderValue): see below.
 *  - @librechat/agents src/llm/invoke.ts: the agent turn is `model.stream(messages)`.
 *  - @librechat/agents src/run.ts generateTitle + src/utils/title.ts: the title is a
 *    `prompt | model` chain `.invoke()`; api/server/controllers/agents/client.js
 *    titleConvo drops `streaming` (omitTitleOptions), so ChatOpenAI's default
 *    `streaming: false` applies and the title request is a non-streamed completion;
 *    generateTitle retries a failed title chain once.
 *
 * The Anthropic endpoint (provider "anthropic"):
 *  - packages/api/src/endpoints/anthropic/initialize.ts: `reverseProxyUrl:
 *    ANTHROPIC_REVERSE_PROXY`, `modelOptions = {...model_parameters, user: req.user.id}`.
 *  - packages/api/src/endpoints/anthropic/llm.ts (getLLMConfig): `{apiKey, model,
 *    stream: true, maxTokens, invocationKwargs: {metadata: {user_id: user}},
 *    clientOptions: {defaultHeaders: getClaudeHeaders(model), baseURL: reverseProxyUrl},
 *    anthropicApiUrl: reverseProxyUrl}`; getClaudeHeaders gives claude-sonnet-4* (prompt
 *    cache on, its default) `anthropic-beta: context-1m-2025-08-07`; configureReasoning
 *    adds `thinking` (on by default, budget 2000; see claudeReasoning).
 *  - since v0.8.7 (PR #13742) `endpoints.anthropic.headers` in librechat.yaml, resolved
 *    as a custom endpoint's, joins clientOptions.defaultHeaders. `headers` in the job
 *    plays that block; without it none is sent, and the user is only `metadata.user_id`.
 *  - the agent turn is `model.stream(messages)`; the title an `.invoke()` (streaming
 *    off), as for the custom endpoint.
 */

import process from 'node:process';

import { ChatAnthropic } from '@langchain/anthropic';
import { AIMessage, HumanMessage, SystemMessage } from '@langchain/core/messages';
import { ChatOpenAI } from '@langchain/openai';

/** The custom endpoint's `headers:` block in librechat.yaml. */
const LIBRECHAT_YAML_HEADERS = Object.freeze({
  'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}',
  'X-LibreChat-User-Email': '{{LIBRECHAT_USER_EMAIL}}',
  'X-LibreChat-Conversation-Id': '{{LIBRECHAT_BODY_CONVERSATIONID}}',
});

/** Same list as ALLOWED_USER_FIELDS in packages/api/src/utils/env.ts. */
const ALLOWED_USER_FIELDS = [
  'id',
  'name',
  'username',
  'email',
  'provider',
  'role',
  'googleId',
  'facebookId',
  'openidId',
  'samlId',
  'ldapId',
  'githubId',
  'discordId',
  'appleId',
  'emailVerified',
  'twoFactorEnabled',
  'termsAccepted',
];
/** Same list as ALLOWED_BODY_FIELDS in packages/api/src/utils/env.ts. */
const ALLOWED_BODY_FIELDS = ['conversationId', 'parentMessageId', 'messageId'];
/** User fields LibreChat passes through encodeHeaderValue when resolving headers. */
const ENCODED_USER_FIELDS = new Set(['name', 'username', 'email']);

/**
 * LibreChat's encodeHeaderValue (packages/api/src/utils/env.ts, since PR #11432):
 * a value holding any character above U+00FF becomes `b64:` + base64(UTF-8); a value
 * within Latin-1 is sent as is (so "joão@exemplo.com.br" travels raw, as Latin-1
 * bytes, while "łukasz@exemplo.pl" travels as "b64:xYJ1a2Fzeg...").
 */
function encodeHeaderValue(value) {
  if (!value || typeof value !== 'string') {
    return '';
  }
  // eslint-disable-next-line no-control-regex
  if (!/[^\u0000-\u00FF]/.test(value)) {
    return value;
  }
  return `b64:${Buffer.from(value, 'utf8').toString('base64')}`;
}

/**
 * Mirrors resolveHeaders(..., isHeader: true) for user and body placeholders. A
 * placeholder whose value is missing resolves to '' (LibreChat's final resolution
 * strips unresolved LIBRECHAT_* placeholders since PR #14595).
 */
function resolveHeaders(headers, user, body) {
  const resolved = {};
  for (const [key, template] of Object.entries(headers)) {
    let value = String(template);
    for (const field of ALLOWED_USER_FIELDS) {
      const placeholder = `{{LIBRECHAT_USER_${field.toUpperCase()}}}`;
      if (!value.includes(placeholder)) continue;
      const raw = user[field];
      let replacement = raw == null ? '' : String(raw);
      if (ENCODED_USER_FIELDS.has(field)) replacement = encodeHeaderValue(replacement);
      value = value.split(placeholder).join(replacement);
    }
    for (const field of ALLOWED_BODY_FIELDS) {
      const placeholder = `{{LIBRECHAT_BODY_${field.toUpperCase()}}}`;
      if (!value.includes(placeholder)) continue;
      const raw = body[field];
      value = value.split(placeholder).join(raw == null ? '' : String(raw));
    }
    resolved[key] = value;
  }
  return resolved;
}

function toLangChainMessages(messages) {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new TypeError('job.messages must be a non-empty array');
  }
  return messages.map((message, index) => {
    const content = message?.content;
    if (typeof content !== 'string') {
      throw new TypeError(`job.messages[${index}].content must be a string`);
    }
    switch (message.role) {
      case 'system':
        return new SystemMessage(content);
      case 'user':
        return new HumanMessage(content);
      case 'assistant':
        return new AIMessage(content);
      default:
        throw new TypeError(`job.messages[${index}].role must be system, user or assistant`);
    }
  });
}

/** Records every HTTP attempt the openai SDK makes; passes the request through untouched. */
function recordingFetch(attempts) {
  return async (url, init) => {
    const attempt = { status: null, headers: null };
    attempts.push(attempt);
    const response = await globalThis.fetch(url, init);
    attempt.status = response.status;
    attempt.headers = Object.fromEntries(response.headers.entries());
    return response;
  };
}

/** The ChatOpenAI fields LibreChat ends up with for the custom endpoint. */
function buildModelFields(job, mode, attempts) {
  const defaultHeaders = resolveHeaders(
    job.headers ?? LIBRECHAT_YAML_HEADERS,
    { id: job.userId, email: job.userEmail },
    { conversationId: job.conversationId },
  );
  const configuration = {
    baseURL: job.baseURL,
    defaultHeaders,
    // Not set by LibreChat: a pass-through wrapper around the global fetch the SDK
    // would use anyway, so the harness can see response headers and count attempts.
    fetch: recordingFetch(attempts),
  };
  /** getOpenAILLMConfig: {streaming, model, ...modelOptions(user)} + apiKey. */
  const fields = {
    model: job.model,
    user: job.userId,
    apiKey: job.apiKey,
    configuration,
  };
  if (mode === 'chat') {
    fields.streaming = true;
    /** createRun, custom endpoint: the SDK asks for no stream_options. */
    fields.streamUsage = false;
    fields.usage = true;
  }
  /* mode 'title': titleConvo filters `streaming` out (omitTitleOptions), leaving
   * ChatOpenAI's default streaming=false: a plain `"stream": false` completion. */
  if (job.maxRetries != null) {
    fields.maxRetries = job.maxRetries;
  }
  /** The chat's "Use Responses API" switch (LibreChat v0.8.7+): POST {baseURL}/responses. */
  if (job.useResponsesApi === true) {
    fields.useResponsesApi = true;
  }
  return fields;
}

/** getClaudeHeaders (packages/api/src/endpoints/anthropic/helpers.ts), prompt cache on. */
function claudeHeaders(model) {
  if (/claude-3[-.]5-sonnet/.test(model)) {
    return { 'anthropic-beta': 'max-tokens-3-5-sonnet-2024-07-15' };
  }
  if (/claude-3[-.]7/.test(model)) {
    return { 'anthropic-beta': 'token-efficient-tools-2025-02-19,output-128k-2025-02-19' };
  }
  if (/claude-sonnet-4/.test(model)) {
    return { 'anthropic-beta': 'context-1m-2025-08-07' };
  }
  return {};
}

/**
 * configureReasoning (packages/api/src/endpoints/anthropic/helpers.ts) with LibreChat's
 * defaults (anthropicSettings: thinking on, thinkingBudget 2000): claude-3-7 and claude-*-4+
 * models think; a budget above max_tokens is cut to 90% of it. `job.thinking: false` is the
 * user switching thinking off, `job.thinkingBudget` the user's budget.
 */
function claudeReasoning(model, maxTokens, job) {
  const thinks = /claude-3[-.]7/.test(model) || /claude-(?:sonnet|opus|haiku)-[4-9]/.test(model);
  if (job.thinking === false || !thinks) return {};
  let budget = job.thinkingBudget ?? 2000;
  if (budget > maxTokens) budget = Math.min(budget, Math.floor(maxTokens * 0.9));
  return { thinking: { type: 'enabled', budget_tokens: budget } };
}

/** The ChatAnthropic fields LibreChat's Anthropic endpoint ends up with (getLLMConfig). */
function buildAnthropicFields(job, attempts) {
  const endpointHeaders = resolveHeaders(
    job.headers ?? {},
    { id: job.userId, email: job.userEmail },
    { conversationId: job.conversationId },
  );
  const fields = {
    apiKey: job.apiKey,
    model: job.model,
    maxTokens: job.maxTokens ?? 8192,
    invocationKwargs: { metadata: { user_id: job.userId } },
    clientOptions: {
      defaultHeaders: { ...claudeHeaders(job.model), ...endpointHeaders },
      baseURL: job.baseURL,
      fetch: recordingFetch(attempts), // not LibreChat's: see buildModelFields
    },
    anthropicApiUrl: job.baseURL,
  };
  Object.assign(fields, claudeReasoning(job.model, fields.maxTokens, job));
  /* LibreChat sets `stream: true`, which ChatAnthropic does not read: the agent turn
   * streams because it calls `.stream()`, the title is a plain `.invoke()`. */
  if (job.maxRetries != null) {
    fields.maxRetries = job.maxRetries;
  }
  return fields;
}

function buildModel(job, mode, attempts) {
  const provider = job.provider ?? 'openai';
  if (provider === 'anthropic') return new ChatAnthropic(buildAnthropicFields(job, attempts));
  if (provider === 'openai') return new ChatOpenAI(buildModelFields(job, mode, attempts));
  throw new TypeError('job.provider must be "openai" or "anthropic"');
}

/** A chunk's text: a string, or (Responses API) the text of its content blocks. */
function contentText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((block) => (typeof block?.text === 'string' ? block.text : '')).join('');
}

function describeError(error) {
  const result = {
    ok: false,
    status: typeof error?.status === 'number' ? error.status : null,
    message: typeof error?.message === 'string' ? error.message : String(error),
    name: typeof error?.name === 'string' ? error.name : (error?.constructor?.name ?? 'Error'),
    className: error?.constructor?.name ?? null,
  };
  if (typeof error?.code === 'string') result.code = error.code;
  if (typeof error?.type === 'string') result.type = error.type;
  if (error?.error !== undefined) result.error = error.error;
  if (typeof error?.lc_error_code === 'string') result.lcErrorCode = error.lc_error_code;
  return result;
}

async function readStdin() {
  const parts = [];
  for await (const part of process.stdin) parts.push(part);
  return Buffer.concat(parts).toString('utf8');
}

let written = false;
/** Writes the one result line, then exits: pending retry timers or keep-alive sockets
 * must not keep the process (and the test waiting on it) alive. */
function emit(result, exitCode = 0) {
  if (written) return;
  written = true;
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(exitCode));
}

async function run(job, signal, attempts, progress) {
  const mode = job.mode ?? 'chat';
  if (mode !== 'chat' && mode !== 'title') {
    throw new TypeError('job.mode must be "chat" or "title"');
  }
  for (const key of ['baseURL', 'apiKey', 'model', 'userId']) {
    if (typeof job[key] !== 'string' || job[key] === '') {
      throw new TypeError(`job.${key} must be a non-empty string`);
    }
  }
  const messages = toLangChainMessages(job.messages);
  const model = buildModel(job, mode, attempts);

  if (mode === 'title') {
    const invoke = () => model.invoke(messages, { signal });
    let message;
    try {
      message = await invoke();
    } catch (error) {
      /* @librechat/agents Run.generateTitle catches any failure of the title chain and
       * invokes it once more (without callbacks), so a failing title costs LibreChat
       * two calls, each with LangChain's own retries. `titleFallback: false` skips it. */
      if (job.titleFallback === false) throw error;
      message = await invoke();
    }
    return {
      ok: true,
      content: contentText(message.content),
      chunks: 0,
      textChunks: 0,
      usage: message.usage_metadata ?? null,
    };
  }

  const stream = await model.stream(messages, { signal });
  let aggregate;
  for await (const chunk of stream) {
    progress.chunks += 1;
    const text = contentText(chunk.content);
    if (text !== '') progress.textChunks += 1;
    progress.content += text;
    aggregate = aggregate === undefined ? chunk : aggregate.concat(chunk);
  }
  return { ok: true, ...progress, usage: aggregate?.usage_metadata ?? null };
}

async function main() {
  // No tracing or ambient OpenAI/Anthropic settings: LangChain would otherwise pick them up.
  for (const name of Object.keys(process.env)) {
    if (/^(LANGCHAIN_|LANGSMITH_|OPENAI_|ANTHROPIC_)/.test(name)) delete process.env[name];
  }

  let job;
  try {
    job = JSON.parse(await readStdin());
  } catch (error) {
    emit({ ok: false, status: null, name: 'HarnessError', message: `bad job: ${error.message}` }, 2);
    return;
  }

  const timeoutMs = Number.isFinite(job?.timeoutMs) && job.timeoutMs > 0 ? job.timeoutMs : 30000;
  const controller = new AbortController();
  const attempts = [];
  /** Text streamed so far; an error result carries it too (LibreChat keeps it). */
  const progress = { content: '', chunks: 0, textChunks: 0 };
  const summary = () => ({
    responseHeaders: attempts.at(-1)?.headers ?? null,
    requests: attempts.length,
    statuses: attempts.map((attempt) => attempt.status),
  });
  const abortTimer = setTimeout(() => controller.abort(new Error('harness timeout')), timeoutMs);
  // Never hang: if the abort does not unwind the client, answer and exit anyway.
  const killTimer = setTimeout(() => {
    emit({
      ok: false,
      status: null,
      name: 'HarnessTimeout',
      message: `no answer ${timeoutMs + 2000} ms after start (abort did not unwind)`,
      ...summary(),
    }, 3);
  }, timeoutMs + 2000);
  killTimer.unref();

  try {
    const result = await run(job, controller.signal, attempts, progress);
    emit({ ...result, ...summary() });
  } catch (error) {
    const described = { ...describeError(error), ...progress };
    if (controller.signal.aborted) {
      described.name = 'HarnessTimeout';
      described.message = `aborted after ${timeoutMs} ms: ${described.message}`;
    }
    emit({ ...described, ...summary() });
  } finally {
    clearTimeout(abortTimer);
    clearTimeout(killTimer);
  }
}

await main();
