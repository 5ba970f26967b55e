// kafkajs 2.2.4 against Strata: admin (create topic), idempotent producer with GZIP,
// a consumer group reading everything back, committed offsets. Usage:
//   node kafkajs_check.js <bootstrap> <topic> <count>
// Prints "OK <count>" on success; exits non-zero with the reason otherwise.
const path = require('path');
const modules = process.env.KAFKAJS_MODULES ||
  path.join(process.env.HOME, '.cache/strata/tools/node/node_modules');
const { Kafka, CompressionTypes, logLevel } = require(path.join(modules, 'kafkajs'));

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = parseInt(countArg, 10);
  const kafka = new Kafka({ clientId: 'kafkajs-check', brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  for (let i = 0; i < count; i += 50) {
    const messages = [];
    for (let j = i; j < Math.min(count, i + 50); j++) {
      messages.push({ key: `k${j % 4}`, value: `js-${j}` });
    }
    await producer.send({ topic, compression: i % 100 === 0 ? CompressionTypes.GZIP : CompressionTypes.None, messages });
  }
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `${topic}-group` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.size} of ${count} consumed`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size === count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  const offsets = await admin.fetchOffsets({ groupId: `${topic}-group`, topics: [topic] });
  const committed = offsets[0].partitions.reduce((sum, p) => sum + Number(p.offset), 0);
  await admin.disconnect();
  if (committed !== count) throw new Error(`committed ${committed}, expected ${count}`);
  console.log(`OK ${seen.size}`);
}

main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
