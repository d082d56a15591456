/*
 * SPIN model of the queuing port (ipc-channel/src/queuing/mod.rs): one producer, one
 * consumer, DEPTH slots; each side is the only writer of its own region, keeps its
 * index privately and reads the peer's index once per call. README.md next to this
 * file says how to run it and which Rust lines each part mirrors; the line numbers in
 * the comments below are those of queuing/mod.rs when the model was written.
 *
 * Scenarios, one per run, chosen with `spin -a [-D<NAME>] channel.pml`:
 *   (none)            honest producer and honest consumer: FIFO, no loss, no
 *                     duplication, no torn message, no overwrite of an unread slot,
 *                     nothing rejected, and both finish.
 *   HOSTILE_PRODUCER  honest consumer; whatever is in the producer region is chosen
 *                     by an adversary at every moment.
 *   HOSTILE_CONSUMER  honest producer; an adversary process writes any value into
 *                     read_index at any moment.
 * Each scenario has assertions (compile pan with -DSAFETY -DNOCLAIM: assertions and
 * invalid end states) and one LTL property, `finishes`: the honest side(s) return from
 * every call they make (compile pan without -DSAFETY, run it with -a -f).
 *
 * Abstractions:
 * - Memory is sequentially consistent and a 32-bit word is the unit of atomicity: each
 *   load or store of one shared word is one step. The release/acquire pairs of the
 *   Rust code are what makes this hold on the real machine; loom checks those. The
 *   guests' 16-byte copies (LDP/STP) are two 64-bit single-copy-atomic accesses, each
 *   two word steps with nothing between them: fewer interleavings than modelled here.
 * - Free-running u32 indices are kept modulo IDX = 4 * DEPTH. 2^32 is a multiple of
 *   IDX, so `a.wrapping_sub(b)` is WRAP(a - b), `index & (depth - 1)` picks the same
 *   slot, and all three classes the code tells apart (0, 1..DEPTH, above DEPTH) occur.
 * - A payload is CAP words. The honest producer's k-th message has number k, LEN_OF(k)
 *   words and every word equal to k, so a stale, torn or overwritten slot shows in what
 *   the consumer delivers. A header len of TOO_LONG stands for every length above the
 *   payload capacity.
 * - crate::checksum is an abstract hash of (seq, len, payload words) modulo CRC_MOD.
 *   The honest scenarios do not rely on it (their ghost checks compare the data
 *   itself); against a hostile producer only "equal or not" matters, and the adversary
 *   can produce every value, so it can always forge a valid checksum.
 * - The slot header's `_reserved` word is never interpreted and is left out; the
 *   TooLarge and BufferTooSmall checks look at private data only and are left out.
 * - Hostile producer: an adversary that can write any word of its region at any moment
 *   is folded into the consumer's loads: every load from the producer region returns
 *   any value of the field's domain (PEER_* below). The consumer's behaviours are
 *   exactly those against an adversary process writing at any time: it can write the
 *   value of its choice just before each load, and nothing else about its memory is
 *   visible to the consumer. A double fetch would still be caught: the two loads
 *   return independent values, as when the adversary writes in between. (A separate
 *   adversary process over stored fields gives the same behaviours but over 4 * 10^7
 *   states even with the smallest domains; see README.md.)
 */

#ifndef DEPTH
#define DEPTH 2
#endif
#define MASK (DEPTH - 1)
#define IDX (4 * DEPTH)

/* a - b and a + 1 on free-running indices, for operands in 0..IDX-1 */
#define WRAP(x) (((x) + IDX) % IDX)

/* Payload capacity in words, and the one length that stands for "too long". */
#define CAP 2
#define TOO_LONG (CAP + 1)

/* Honest pair: messages to send. Length of message number m, in words. */
#ifndef MSGS
#define MSGS 5
#endif
#define LEN_OF(m) ((m) % (CAP + 1))

/* Hostile scenarios: calls the honest side makes. */
#ifndef CALLS
#define CALLS 4
#endif

#ifdef HOSTILE_PRODUCER
#define CRC_MOD 4
#else
#define CRC_MOD 251
#endif
#define CRC_STEP(c, x) ((((c) * 7) + (x) + 1) % CRC_MOD)

#if DEPTH != 2 || CAP != 2
#error "the value domains and ghost checks below are written out for DEPTH = 2, CAP = 2"
#endif

/* Every value of a field: one nondeterministic step. */
#define ANY_IDX(x) if :: x = 0 :: x = 1 :: x = 2 :: x = 3 :: x = 4 :: x = 5 :: x = 6 :: x = 7 fi
#define ANY_LEN(x) if :: x = 0 :: x = 1 :: x = 2 :: x = TOO_LONG fi
#define ANY_CRC(x) if :: x = 0 :: x = 1 :: x = 2 :: x = 3 fi
#define ANY_PAY(x) if :: x = 0 :: x = 1 fi

/* Loads from the producer region: the stored word, or the adversary's choice. */
#ifdef HOSTILE_PRODUCER
#define PEER_WRITE_INDEX(x) ANY_IDX(x)
#define PEER_SEQ(x, s) ANY_IDX(x)
#define PEER_LEN(x, s) ANY_LEN(x)
#define PEER_CRC(x, s) ANY_CRC(x)
#define PEER_PAY(x, a) ANY_PAY(x)
#else
#define PEER_WRITE_INDEX(x) x = write_index
#define PEER_SEQ(x, s) x = slot_seq[s]
#define PEER_LEN(x, s) x = slot_len[s]
#define PEER_CRC(x, s) x = slot_crc[s]
#define PEER_PAY(x, a) x = slot_pay[a]
#endif

#if !defined(HOSTILE_PRODUCER) && !defined(HOSTILE_CONSUMER)
#define HONEST_PAIR
#endif

mtype = { OK, FULL, PEER_CORRUPT, EMPTY, BAD_INDEX, REJECTED };

/* Producer region (wire.rs: ProducerHeader::write_index, then DEPTH slots, each a
 * SlotHeader {seq, len, crc} and CAP payload words), written only by the producer. */
byte write_index;
byte slot_seq[DEPTH];
byte slot_len[DEPTH];
byte slot_crc[DEPTH];
byte slot_pay[DEPTH * CAP];

/* Consumer region (wire.rs: ConsumerHeader::read_index), written only by the consumer. */
byte read_index;

/* Ghost state: in no region, only for the properties. */
byte attached;      /* honest pair: ends that have returned from new() */
byte sent;          /* honest producer: messages published (Ok sends) */
byte delivered;     /* honest consumer: messages delivered (Ok receives) */
byte rejected;      /* honest consumer: RecvStats::rejected() */
byte live[DEPTH];   /* honest pair: number of the message a slot holds, from the
                       producer's first write into it until the consumer has copied
                       it out; 0 = free */
bool written[DEPTH]; /* hostile consumer: the producer has written this slot */
bool p_done;        /* the honest producer has returned from its last call */
bool c_done;        /* the honest consumer has returned from its last call */

/* Honest pair: both ends attach before either sends or receives, as the partitions'
 * start-up does and as tests/loom.rs assumes. Consumer::new takes the producer's
 * current index, so a message sent before it runs is never delivered (documented at
 * Consumer::new); without this the "no loss" check fails on exactly that. */
#ifdef HONEST_PAIR
#define ATTACHED() attached++; (attached == 2)
#else
#define ATTACHED() skip
#endif

/* crate::checksum (lib.rs): over seq, len and the first l words of the caller's
 * private buffer `buf`; l <= CAP. Private data only, so callers make it one
 * indivisible step (d_step). */
inline checksum(s, l, out) {
    out = CRC_STEP(0, s);
    out = CRC_STEP(out, l);
    k = 0;
    do
    :: k < l -> out = CRC_STEP(out, buf[k]); k++
    :: else -> break
    od;
    k = 0
}

/* Producer::send (queuing/mod.rs:97-120), one call: message number m, plen words in
 * the private buffer `buf`; w is the private Producer::write; the outcome goes to
 * res. */
inline send(w, m, res) {
    /* let mut used = self.write.wrapping_sub(self.read_seen): r_seen is the
     * consumer's index as last loaded (Producer::read_seen), kept between calls */
    used = WRAP(w - r_seen);
    if
    :: used >= DEPTH ->
        /* looks full: self.read_seen = self.peer.load_acquire(READ_INDEX), the one
         * load of the peer; used = self.write.wrapping_sub(self.read_seen) */
        r_seen = read_index;
        used = WRAP(w - r_seen)
    :: else -> skip
    fi;
    if
    :: used > DEPTH ->
        /* :103-106 peer_corrupt += 1; return Err(PeerCorrupt) */
        res = PEER_CORRUPT
    :: used == DEPTH ->
        /* :107-110 full += 1; return Err(Full) */
        res = FULL
    :: else ->
        /* :111 let slot = self.geo.slot_offset(self.write) (wire.rs: index & (depth - 1)) */
        slot = w & MASK;
        assert(slot < DEPTH);
#ifdef HOSTILE_CONSUMER
        /* The slot's previous message (index w - DEPTH) is one the index just loaded
         * says was consumed: 1 <= r_seen - (w - DEPTH) <= DEPTH. */
        assert(!written[slot] || (WRAP(r_seen - slot_seq[slot]) >= 1 && WRAP(r_seen - slot_seq[slot]) <= DEPTH));
#else
        /* No overwrite of a slot the consumer has not finished copying out. */
        d_step { assert(live[slot] == 0); live[slot] = m };
#endif
        /* :113 self.own.write(slot + SLOT_HEADER, msg): payload words, in order (mem.rs copy_in) */
        i = 0;
        do
        :: i < plen -> assert(slot * CAP + i < DEPTH * CAP); slot_pay[slot * CAP + i] = buf[i]; i++
        :: else -> break
        od;
        i = 0;
        /* :114 SlotHeader { seq: self.write, len, crc: checksum(self.write, len, msg) } */
        d_step { checksum(w, plen, crc) };
        /* :115 self.own.write(slot, header.as_bytes()): seq, len, crc, in that order */
        slot_seq[slot] = w;
        slot_len[slot] = plen;
        slot_crc[slot] = crc;
#ifdef HOSTILE_CONSUMER
        written[slot] = 1;
#endif
        /* :116 self.write = self.write.wrapping_add(1) */
        w = WRAP(w + 1);
        /* :117 self.own.store_release(WRITE_INDEX, self.write); the ghost count of
         * published messages moves with it */
        atomic { write_index = w; sent++ };
        res = OK
    fi;
    d_step { used = 0; slot = 0; crc = 0 }
}

/* Consumer::recv (queuing/mod.rs:161-199), one call: r is the private
 * Consumer::read. A delivered message is left in h_seq, h_len and buf; the outcome
 * goes to res. */
inline recv(r, res) {
    /* :165 let write = self.peer.load_acquire(WRITE_INDEX): the one load of the peer's index */
    PEER_WRITE_INDEX(w_seen);
    /* :166 let available = write.wrapping_sub(self.read) */
    avail = WRAP(w_seen - r);
    if
    :: avail == 0 ->
        /* :167-169 return Err(Empty) */
        res = EMPTY
    :: avail > DEPTH ->
        /* :170-173 bad_index += 1; return Err(BadIndex): nothing else changes */
        res = BAD_INDEX
    :: else ->
        /* :175 let slot = self.geo.slot_offset(self.read) */
        slot = r & MASK;
        assert(slot < DEPTH);
        /* :177 self.peer.read(slot, &mut raw): the header words, each loaded once,
         * in order (mem.rs copy_out) */
        PEER_SEQ(h_seq, slot);
        PEER_LEN(h_len, slot);
        PEER_CRC(h_crc, slot);
        /* :180 let len = (header.len as usize).min(capacity) */
        n = (h_len < CAP -> h_len : CAP);
        /* :181 self.peer.read(slot + SLOT_HEADER, &mut buf[..len]): payload words, each once */
        i = 0;
        do
        :: i < n -> assert(slot * CAP + i < DEPTH * CAP); PEER_PAY(buf[i], slot * CAP + i); i++
        :: else -> break
        od;
        i = 0;
#ifdef HONEST_PAIR
        /* The copy is of the next message in send order, and only now is the slot
         * free for the producer. */
        d_step { assert(live[slot] == delivered + 1); live[slot] = 0 };
#endif
        /* :182-194 validate the private copy: seq, then len, then checksum */
        if
        :: h_seq != r -> res = REJECTED                   /* bad_seq */
        :: h_seq == r && h_len > CAP -> res = REJECTED    /* bad_len */
        :: h_seq == r && h_len <= CAP ->
            d_step { checksum(h_seq, h_len, c) };
            if
            :: c != h_crc -> res = REJECTED               /* bad_crc */
            :: c == h_crc -> res = OK                     /* received */
            fi;
            c = 0
        fi;
        if
        :: res == REJECTED -> rejected++
        :: else -> skip
        fi;
        /* :196-197 valid or not: self.read = self.read.wrapping_add(1);
         * self.own.store_release(READ_INDEX, self.read) */
        r = WRAP(r + 1);
        read_index = r
    fi;
    d_step { w_seen = 0; avail = 0; slot = 0; n = 0 }
}

#ifndef HOSTILE_PRODUCER
/* The honest producer: Producer::new, then calls to Producer::send. */
proctype Producer() {
    byte w;            /* Producer::write */
    byte w_before;     /* ghost: w when the call started */
    byte m = 1;        /* number of the next message */
    byte plen, r_seen, used, slot, crc, i, k, j;
    byte buf[CAP];     /* the caller's message */
    byte calls;
    mtype res;

    /* Producer::new: let published = own.load_acquire(WRITE_INDEX);
     * let read = peer.load_acquire(READ_INDEX);
     * let write = if published.wrapping_sub(read) <= depth { published } else { read };
     * own.write(header), own.store_release(WRITE_INDEX, write) */
    w = write_index;
    r_seen = read_index;
    if
    :: WRAP(w - r_seen) <= DEPTH -> skip
    :: else -> w = r_seen
    fi;
    /* read_seen: read */
    write_index = w;
    ATTACHED();
    do
#ifdef HOSTILE_CONSUMER
    :: calls == CALLS -> break
#else
    :: m > MSGS -> break
#endif
    :: else ->
#ifdef HOSTILE_CONSUMER
        /* Between calls, whatever the consumer wrote, the producer region is
         * well formed: write_index is ours, and every written slot holds a message
         * of an index in w - DEPTH .. w - 1, in the slot that index maps to, with a
         * valid length and checksum. */
        d_step {
            assert(write_index == w);
            j = 0;
            do
            :: j < DEPTH ->
                if
                :: written[j] ->
                    assert((slot_seq[j] & MASK) == j);
                    assert(WRAP(w - slot_seq[j]) >= 1 && WRAP(w - slot_seq[j]) <= DEPTH);
                    assert(slot_len[j] <= CAP);
                    k = 0;
                    do
                    :: k < slot_len[j] -> buf[k] = slot_pay[j * CAP + k]; k++
                    :: else -> break
                    od;
                    checksum(slot_seq[j], slot_len[j], crc);
                    assert(crc == slot_crc[j])
                :: else -> skip
                fi;
                j++
            :: else -> break
            od;
            j = 0; k = 0; crc = 0; buf[0] = 0; buf[1] = 0
        };
#endif
        /* The caller's message: LEN_OF(m) words, each equal to m. */
        d_step {
            plen = LEN_OF(m);
            i = 0;
            do
            :: i < plen -> buf[i] = m; i++
            :: else -> break
            od;
            i = 0;
            w_before = w
        };
        send(w, m, res);
        /* w grows by exactly one on Ok, and not at all otherwise. */
        assert((res == OK && w == WRAP(w_before + 1)) || (res != OK && w == w_before));
#ifdef HOSTILE_CONSUMER
        if
        :: res == OK -> m++
        :: else -> skip
        fi;
        calls++;
#else
        if
        :: res == OK -> m++
        :: res == FULL -> skip     /* the caller tries again */
        :: else -> assert(false)   /* PeerCorrupt from an honest consumer */
        fi;
#endif
        d_step { buf[0] = 0; buf[1] = 0; plen = 0; w_before = 0 }
    od;
    p_done = 1
}
#endif

#ifndef HOSTILE_CONSUMER
/* The honest consumer: Consumer::new, then calls to Consumer::recv. */
proctype Consumer() {
    byte r;            /* Consumer::read */
    byte r_before;     /* ghost: r when the call started */
    byte w_seen, avail, slot, h_seq, h_len, h_crc, n, i, k, c;
    byte buf[CAP];     /* the caller's buffer */
    byte calls;
    mtype res;

    /* Consumer::new (:144-157): :147 let read = peer.load_acquire(WRITE_INDEX);
     * :154-155 own.write(header), own.store_release(READ_INDEX, read) */
    PEER_WRITE_INDEX(r);
    read_index = r;
    ATTACHED();
    do
#ifdef HOSTILE_PRODUCER
    :: calls == CALLS -> break
#else
    :: delivered == MSGS -> break
#endif
    :: else ->
        r_before = r;
        recv(r, res);
        /* r moves by one exactly when a slot was consumed (Ok or Rejected), not at
         * all otherwise, and our own region says r. */
        assert(((res == OK || res == REJECTED) && r == WRAP(r_before + 1))
               || ((res == EMPTY || res == BAD_INDEX) && r == r_before));
        assert(read_index == r);
#ifdef HOSTILE_PRODUCER
        /* What is delivered is the private copy, and it passed validation. */
        if
        :: res == OK ->
            assert(h_seq == r_before && h_len <= CAP);
            d_step { checksum(h_seq, h_len, c) };
            assert(c == h_crc);
            c = 0
        :: else -> skip
        fi;
        calls++;
#else
        if
        :: res == OK ->
            /* FIFO, no loss, no duplication, not torn: the next message in send
             * order, whole, and one that was published. */
            d_step {
                delivered++;
                assert(delivered <= sent);
                assert(h_seq == r_before);
                assert(h_len == LEN_OF(delivered));
                k = 0;
                do
                :: k < h_len -> assert(buf[k] == delivered); k++
                :: else -> break
                od;
                k = 0
            }
        :: res == EMPTY -> skip    /* the caller tries again */
        :: else -> assert(false)   /* BadIndex or Rejected from an honest producer */
        fi;
#endif
        d_step { h_seq = 0; h_len = 0; h_crc = 0; buf[0] = 0; buf[1] = 0; r_before = 0 }
    od;
#ifdef HONEST_PAIR
    /* Drained: all sent, all delivered, nothing rejected, every slot free. */
    assert(delivered == MSGS && sent == MSGS && rejected == 0);
    assert(live[0] == 0 && live[1] == 0);
#endif
    c_done = 1
}
#endif

#ifdef HOSTILE_CONSUMER
/* The adversary in the consumer's place: any value into read_index, at any moment,
 * for ever (or not at all). */
proctype HostileConsumer() {
end:
    do
    :: ANY_IDX(read_index)
    od
}
#endif

init {
    byte start;
    atomic {
#ifdef HONEST_PAIR
        /* The regions agree on some index when the partitions attach: every one, so
         * the indices wrap during the run. */
        select (start : 0 .. IDX - 1);
        write_index = start;
        read_index = start;
        start = 0;
        run Producer();
        run Consumer();
#elif defined(HOSTILE_PRODUCER)
        run Consumer();
#else
        run Producer();
        run HostileConsumer();
#endif
    }
}

/* Liveness (pan -a -f, weak fairness): every honest side returns from every call it
 * makes, whatever the adversary does; for the honest pair, with the drain check
 * above, every message sent is delivered. */
#if defined(HOSTILE_PRODUCER)
ltl finishes { <> c_done }
#elif defined(HOSTILE_CONSUMER)
ltl finishes { <> p_done }
#else
ltl finishes { <> (p_done && c_done) }
#endif
