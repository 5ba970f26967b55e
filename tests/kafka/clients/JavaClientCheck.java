// The Java kafka-clients producer and consumer against Strata, with their defaults
// (idempotent producer, acks=all, cooperative-sticky assignor): produce N records with each
// codec, consume them in a group, commit, check the committed offsets. Usage:
//   java -cp '<kafka libs>/*' JavaClientCheck.java <bootstrap> <topic> <count>
//   java -cp '<kafka libs>/*' JavaClientCheck.java <bootstrap> <topic> <count> <client.properties>
// The properties file, when given, adds client settings (security.protocol, SASL, TLS).
// Prints "OK <count>" on success; exits non-zero with the reason otherwise.
import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class JavaClientCheck {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int count = Integer.parseInt(args[2]);
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        if (args.length > 3) {
            try (var in = new java.io.FileInputStream(args[3])) {
                common.load(in);
            }
        }
        try (Admin admin = Admin.create(common)) {
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get();
        }
        String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
        int sent = 0;
        for (String codec : codecs) {
            Properties p = new Properties();
            p.putAll(common);
            p.put("compression.type", codec);
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                List<java.util.concurrent.Future<RecordMetadata>> acks = new ArrayList<>();
                for (int i = 0; i < count / codecs.length; i++, sent++) {
                    acks.add(producer.send(new ProducerRecord<>(topic, "k" + (sent % 7), codec + "-" + sent)));
                }
                for (var a : acks) a.get();
            }
        }
        Properties c = new Properties();
        c.putAll(common);
        c.put("group.id", topic + "-group");
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        Set<String> seen = new HashSet<>();
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen.size() < sent && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    seen.add(r.value());
                }
            }
            consumer.commitSync();
            long committed = 0;
            for (int part = 0; part < 3; part++) {
                OffsetAndMetadata o = consumer.committed(Set.of(new TopicPartition(topic, part))).get(new TopicPartition(topic, part));
                committed += o == null ? 0 : o.offset();
            }
            if (seen.size() != sent || committed != sent) {
                System.err.println("consumed " + seen.size() + ", committed " + committed + ", sent " + sent);
                System.exit(1);
            }
        }
        System.out.println("OK " + sent);
    }
}
