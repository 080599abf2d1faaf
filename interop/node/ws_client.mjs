// Drives Petrel over WebSocket with the `mqtt` npm package, as a browser
// page would: connect, subscribe, publish at QoS 0/1/2, receive in order,
// then a retained message for a second client. Exits 0 on success.
import mqtt from "mqtt";

const url = process.argv[2];
const protocolVersion = Number(process.argv[3] || 4);
const fail = (msg) => { console.error("FAIL: " + msg); process.exit(1); };
setTimeout(() => fail("timed out"), 15000).unref();

const connect = (clientId) => new Promise((resolve, reject) => {
  const protocolId = protocolVersion === 3 ? "MQIsdp" : "MQTT";
  const c = mqtt.connect(url, { clientId, protocolId, protocolVersion, clean: true, reconnectPeriod: 0 });
  c.once("connect", () => resolve(c));
  c.once("error", reject);
});

const sub = await connect("node-sub");
const got = [];
const want = ["m0", "m1", "m2"];
const all = new Promise((resolve) => sub.on("message", (topic, payload, packet) => {
  got.push(`${topic}|${payload}|${packet.qos}`);
  if (got.length === want.length) resolve();
}));
await sub.subscribeAsync("node/+", { qos: 2 });
const pub = await connect("node-pub");
for (let q = 0; q < 3; q++) await pub.publishAsync(`node/t`, `m${q}`, { qos: q });
await all;
const expected = want.map((m, q) => `node/t|${m}|${q}`);
if (JSON.stringify(got) !== JSON.stringify(expected)) fail(`got ${JSON.stringify(got)}, want ${JSON.stringify(expected)}`);

await pub.publishAsync("node/retained", "kept", { qos: 1, retain: true });
const late = await connect("node-late");
const retained = new Promise((resolve) => late.on("message", (topic, payload, packet) => resolve([topic, String(payload), packet.retain])));
await late.subscribeAsync("node/retained", { qos: 1 });
const [rt, rp, rflag] = await retained;
if (rt !== "node/retained" || rp !== "kept" || rflag !== true) fail(`retained: ${rt} ${rp} ${rflag}`);

await Promise.all([sub.endAsync(), pub.endAsync(), late.endAsync()]);
console.log("ok");
process.exit(0);
