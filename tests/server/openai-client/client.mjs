// The official openai package against `iris serve`: an image chat, a streamed chat and the model
// list. Prints one JSON object with what came back; exits non-zero on any error.
//   node client.mjs BASE_URL API_KEY IMAGE_FILE QUESTION
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const [baseURL, apiKey, imageFile, question] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const image = `data:image/png;base64,${readFileSync(imageFile).toString("base64")}`;
const messages = [{
  role: "user",
  content: [
    { type: "image_url", image_url: { url: image } },
    { type: "text", text: question },
  ],
}];

const models = await client.models.list();
const chat = await client.chat.completions.create({ model: "iris-demo", messages, max_tokens: 32 });

const stream = await client.chat.completions.create({ model: "iris-demo", messages, max_tokens: 32, stream: true });
const pieces = [];
let finish = null;
let usage = null;
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (choice?.delta?.content) pieces.push(choice.delta.content);
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
}

let rejected = null;
try {
  await new OpenAI({ baseURL, apiKey: "wrong-key-0123456789", maxRetries: 0 }).models.list();
} catch (e) {
  rejected = { status: e.status, type: e.error?.type ?? null };
}

console.log(JSON.stringify({
  models: models.data.map((m) => m.id),
  answer: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason,
  usage: chat.usage,
  streamed: pieces.join(""),
  stream_pieces: pieces.length,
  stream_finish_reason: finish,
  stream_usage: usage,
  wrong_key: rejected,
}));
