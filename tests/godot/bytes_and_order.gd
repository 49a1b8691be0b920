## bytes_and_order: exact bytes both ways for varied sizes (lock-step, default buffers), then
## the order of STREAM_N packets each way at once (windowed with cumulative acks; a sender that
## gets an error from put_packet retries on a later frame). Raw peers, no SceneMultiplayer.
## Roles: server, client.
extends "res://tests/lib/base.gd"

## Sizes around the WebSocket length-encoding boundaries (125/126, 65535) and up to 60000 B
## (below get_max_packet_size() with the default 65536-byte buffers).
const SIZES: Array[int] = [1, 2, 3, 100, 125, 126, 127, 1000, 4096, 16384, 60000]
const STREAM_N := 5000
const WINDOW := 256          # packets in flight per direction (<= ~27 KB < outbound buffer)
const ACK_EVERY := 64
const TAG_DATA := 0x44       # 'D'
const TAG_ACK := 0x41        # 'A'

var p: Object
var other: int = 0           # the remote peer id


func run() -> void:
	p = make_peer()
	watch(p, "peer")
	other = await connect_raw(p, "peer")
	if other == 0:
		return
	await lockstep()
	await stream()
	await barrier("done")


## Client sends SIZES[k] (content seed 1000+k), the server checks it and answers with the same
## size (seed 2000+k); the client checks and goes on.
func lockstep() -> void:
	var sent_seed := 1000 if role == "client" else 2000
	var recv_seed := 2000 if role == "client" else 1000
	var dir := "c2s" if role == "server" else "s2c"   # direction of what *we* receive
	for k in SIZES.size():
		var size: int = SIZES[k]
		if role == "client":
			expect_eq(p.put_packet(pattern(size, sent_seed + k)), OK_, "put_size_%d" % size)
		if not await wait_until(func() -> bool: return p.get_available_packet_count() > 0, 10.0,
				"packet of %d bytes" % size):
			check(false, "%s_size_%d" % [dir, size], "nothing received")
			return
		var src: int = p.get_packet_peer()
		var chan: int = p.get_packet_channel()
		var mode: int = p.get_packet_mode()
		var pkt: PackedByteArray = p.get_packet()
		var expected := pattern(size, recv_seed + k)
		var ok := pkt == expected
		var detail := ""
		if not ok:
			var first := -1
			for i in mini(pkt.size(), expected.size()):
				if pkt[i] != expected[i]:
					first = i
					break
			detail = "got %d bytes (expected %d), first difference at %d" % [
					pkt.size(), expected.size(), first]
		check(ok, "%s_size_%d" % [dir, size], detail)
		if k == 0:
			expect_eq(src, other, "%s_packet_peer" % dir)
			expect_eq(chan, 0, "%s_packet_channel" % dir)
			expect_eq(mode, MultiplayerPeer.TRANSFER_MODE_RELIABLE, "%s_packet_mode" % dir)
		elif src != other:
			expect_eq(src, other, "%s_packet_peer_size_%d" % [dir, size])
		if role == "server":
			expect_eq(p.put_packet(pattern(size, sent_seed + k)), OK_, "put_size_%d" % size)


static func stream_packet(seq: int, salt: int) -> PackedByteArray:
	var n: int = (seq * 7) % 61
	var b := PackedByteArray()
	b.resize(5 + n)
	b[0] = TAG_DATA
	b.encode_u32(1, seq)
	for i in n:
		b[5 + i] = (seq + i * 13 + salt) & 0xFF
	return b


## Both directions at once; each side sends STREAM_N sequenced packets and verifies it receives
## STREAM_N in order with the right content.
func stream() -> void:
	var salt_tx := 7 if role == "client" else 99
	var salt_rx := 99 if role == "client" else 7
	var tx_seq := 0
	var tx_acked := 0
	var rx_next := 0
	var ack_sent := 0
	var put_errors := 0
	var bad := 0
	var first_bad := ""
	var wrong_src := 0
	var t0 := Time.get_ticks_msec()
	var deadline := t0 + 15000
	while rx_next < STREAM_N or tx_acked < STREAM_N:
		if Time.get_ticks_msec() > deadline or _finished:
			break
		while p.get_available_packet_count() > 0:
			if p.get_packet_peer() != other:
				wrong_src += 1
			var pkt: PackedByteArray = p.get_packet()
			if pkt.size() >= 5 and pkt[0] == TAG_ACK:
				tx_acked = maxi(tx_acked, pkt.decode_u32(1))
			elif pkt.size() >= 5 and pkt[0] == TAG_DATA:
				var seq: int = pkt.decode_u32(1)
				if seq != rx_next or pkt != stream_packet(seq, salt_rx):
					bad += 1
					if first_bad == "":
						first_bad = "expected seq %d, got seq %d (%d bytes)" % [rx_next, seq, pkt.size()]
				rx_next = seq + 1
			else:
				bad += 1
				if first_bad == "":
					first_bad = "unexpected packet %s" % _show(pkt)
		if ack_sent < rx_next and (rx_next - ack_sent >= ACK_EVERY or rx_next >= STREAM_N
				or p.get_available_packet_count() == 0):
			var ack := PackedByteArray([TAG_ACK])
			ack.append_array(u32(rx_next))
			if p.put_packet(ack) == OK_:
				ack_sent = rx_next
			else:
				put_errors += 1
		var burst := 0
		while tx_seq < STREAM_N and tx_seq - tx_acked < WINDOW and burst < 200:
			var err: int = p.put_packet(stream_packet(tx_seq, salt_tx))
			if err != OK_:
				put_errors += 1
				break
			tx_seq += 1
			burst += 1
		await process_frame
	# Our last ack may not have gone out yet.
	while ack_sent < rx_next and Time.get_ticks_msec() < deadline and not _finished:
		var ack := PackedByteArray([TAG_ACK])
		ack.append_array(u32(rx_next))
		if p.put_packet(ack) == OK_:
			ack_sent = rx_next
		await process_frame
	var ms := Time.get_ticks_msec() - t0
	var dir := "c2s" if role == "server" else "s2c"
	expect_eq(rx_next, STREAM_N, "%s_stream_count" % dir)
	check(bad == 0, "%s_stream_order_and_content" % dir, "%d bad packets; first: %s" % [bad, first_bad])
	expect_eq(wrong_src, 0, "%s_stream_packet_peer" % dir)
	expect_eq(tx_acked, STREAM_N, "stream_all_acked_by_remote")
	info("stream %d packets each way in %d ms, %d put_packet errors" % [STREAM_N, ms, put_errors])
