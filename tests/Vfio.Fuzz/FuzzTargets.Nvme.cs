using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Nvme.Queues;
using Vfio.Spec.Nvme;

namespace Vfio.Fuzz;

public static partial class FuzzTargets
{
    /// <summary>
    /// NVMe completion processing (NVMe 1.4 §4.1, §4.6) with the input playing the controller. The driver's real
    /// <see cref="QueuePair"/> (placing commands, the tail doorbell, taking completions by phase tag, the head wrap and
    /// the head doorbell) runs over heap memory, every entry it takes goes through the real
    /// <see cref="CompletionCheck"/>, and a model of the I/O queue's slot table retires what the check accepts (the
    /// queue's own retire code needs a controller, so this is the model, not <c>NvmeIoQueue.RetireLocked</c>).
    /// Byte 0 picks the queue size (2-17 entries) and the queue id (1-4); then each op byte is: submit a command,
    /// ring the tail doorbell, let the device fetch up to N commands, let the device complete one fetched command
    /// correctly, let the device write a raw 16-byte entry (at its tail, advancing it even over unconsumed entries, or
    /// at any slot), or reap. A crash is: the queue pair and the check disagreeing on whether an entry is posted, a
    /// CID retired that is not in flight or more often than submitted, counts that do not balance, or an entry from
    /// a device that has only behaved correctly being rejected. After the first rejected entry the host stops using
    /// the queue (as the driver faults it); the end releases every command still in flight, once.
    /// </summary>
    private static void NvmeCompletionsTarget(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty) { return; }
        int entries = 2 + (data[0] & 15);
        int queueId = 1 + (data[0] >> 4 & 3);
        var dma = new HeapDma();
        var bar = new DoorbellRecorder(queueId);
        var pair = new QueuePair(queueId, entries, dma, bar, doorbellStride: 0, owner: "fuzz");
        try
        {
            new CompletionRun(pair, dma.Buffers[0], dma.Buffers[1], bar, entries, queueId).Run(data[1..]);
        }
        finally
        {
            pair.Dispose();
        }
    }

    /// <summary>The host's slot table and the device's queue state for one input.</summary>
    private sealed class CompletionRun(QueuePair pair, DmaBuffer sq, DmaBuffer cq, DoorbellRecorder bar, int entries, int queueId)
    {
        // Host: CIDs 0..entries-2, so at most entries - 1 commands are outstanding and the tail never overtakes the
        // controller's head (§4.1: a full queue is tail + 1 == head).
        private readonly int _capacity = entries - 1;
        private readonly bool[] _inFlight = new bool[entries - 1];
        private readonly int[] _submittedPerCid = new int[entries - 1];
        private readonly int[] _retiredPerCid = new int[entries - 1];
        private readonly Stack<ushort> _free = new(Enumerable.Range(0, entries - 1).Select(i => (ushort)i).Reverse());
        private int _hostHead;
        private bool _hostPhase = true;
        private int _lastSqHead;
        private bool _faulted;
        private long _submitted, _retired;

        // Device: how far it has fetched, the commands it holds, where it posts next and with which phase.
        private int _deviceSqHead;
        private readonly List<ushort> _fetched = [];
        private int _deviceCqTail;
        private bool _devicePhase = true;
        private bool _hostileSeen;

        public void Run(ReadOnlySpan<byte> ops)
        {
            int at = 0;
            while (at < ops.Length)
            {
                byte op = ops[at++];
                switch (op % 6)
                {
                    case 0: Submit(); break;
                    case 1: pair.RingSubmissions(); break;
                    case 2: Fetch(op >> 3); break;
                    case 3 when Take(ops, ref at, 2, out var b): CompleteCorrectly(b[0], b[1]); break;
                    case 4 when Take(ops, ref at, 17, out var b): WriteRaw(b[0], b[1..]); break;
                    case 5: Reap(); break;
                }
                CheckCounts();
            }
            // The queue is deleted or the controller reset: every command still in flight ends once (NvmeIoQueue.AbortInFlight).
            for (int cid = 0; cid < _capacity; cid++)
            {
                if (_inFlight[cid]) { Retire((ushort)cid); }
            }
            if (_free.Count != _capacity || _retired != _submitted) { throw new InvalidOperationException($"after the reset {_free.Count} of {_capacity} CIDs are free, {_retired} of {_submitted} commands ended"); }
        }

        private void Submit()
        {
            if (_faulted || _free.Count == 0) { return; }
            ushort cid = _free.Pop();
            var command = NvmeCommand.Flush(1);
            command.CommandId = cid;
            pair.Place(command);
            _inFlight[cid] = true;
            _submittedPerCid[cid]++;
            _submitted++;
        }

        /// <summary>A correct device fetches commands between its head and the tail last written to the doorbell (§4.1).</summary>
        private void Fetch(int count)
        {
            for (; count > 0 && _deviceSqHead != bar.SubmissionTail; count--)
            {
                // CDW0 bits 31:16 are the CID (§4.2, Figure 105).
                _fetched.Add(BinaryPrimitives.ReadUInt16LittleEndian(sq.Span.Slice(_deviceSqHead * NvmeCommand.Size + 2, 2)));
                _deviceSqHead = QueueMath.Next(_deviceSqHead, entries);
            }
        }

        /// <summary>A correct device posts a completion for a fetched command when the CQ has room (§4.6, §7.2.5).</summary>
        private void CompleteCorrectly(byte pick, byte statusByte)
        {
            if (_fetched.Count == 0 || QueueMath.Next(_deviceCqTail, entries) == bar.CompletionHead) { return; }
            int i = pick % _fetched.Count;
            ushort cid = _fetched[i];
            _fetched.RemoveAt(i);
            // Any SC with a defined SCT (0-3, 7): a command may fail and still be a correct completion.
            var type = (statusByte & 7) switch { 4 or 5 or 6 => StatusCodeType.VendorSpecific, var t => (StatusCodeType)t };
            var status = (statusByte & 0x80) == 0 ? NvmeStatus.Success : NvmeStatus.Create(type, (byte)(statusByte * 37));
            var entry = new NvmeCompletion
            {
                Dw0 = statusByte,
                SubmissionQueueHead = (ushort)_deviceSqHead,
                SubmissionQueueId = (ushort)queueId,
                CommandId = cid,
                StatusAndPhase = (ushort)(status.Value << 1 | (_devicePhase ? 1 : 0)),
            };
            Span<byte> raw = stackalloc byte[NvmeCompletion.Size];
            MemoryMarshal.Write(raw, in entry);
            Post(_deviceCqTail, raw);
            QueueMath.AdvanceHead(ref _deviceCqTail, ref _devicePhase, entries);
        }

        /// <summary>A hostile device writes 16 bytes of the input: at its tail (advancing it) when bit 7 is set, else at any slot.</summary>
        private void WriteRaw(byte where, ReadOnlySpan<byte> raw)
        {
            _hostileSeen = true;
            if ((where & 0x80) != 0)
            {
                Post(_deviceCqTail, raw);
                QueueMath.AdvanceHead(ref _deviceCqTail, ref _devicePhase, entries);
            }
            else
            {
                Post(where % entries, raw);
            }
        }

        /// <summary>DW0-DW2 first, the status and phase word last, as a controller makes an entry visible (§4.6).</summary>
        private void Post(int slot, ReadOnlySpan<byte> raw)
        {
            var target = cq.Span.Slice(slot * NvmeCompletion.Size, NvmeCompletion.Size);
            raw[..14].CopyTo(target);
            Volatile.Write(ref MemoryMarshal.AsRef<ushort>(target[14..]), BinaryPrimitives.ReadUInt16LittleEndian(raw[14..]));
        }

        private void Reap()
        {
            if (_faulted) { return; }
            while (true)
            {
                var seen = CompletionCheck.Decode(cq.Span.Slice(_hostHead * NvmeCompletion.Size, NvmeCompletion.Size));
                var window = SubmissionWindow.Tracked(_lastSqHead, pair.Tail);
                var verdict = CompletionCheck.Check(seen, queueId, entries, _hostPhase, new InFlightView(_inFlight), window);
                bool taken = pair.TryTake(out var c);
                if (taken != (verdict != CompletionVerdict.NotPosted))
                {
                    throw new InvalidOperationException($"the queue pair {(taken ? "took" : "left")} entry {_hostHead} (phase bit {seen.Phase}, host expects {_hostPhase}), but the check says {verdict}");
                }
                if (!taken) { break; }
                if (!c.Equals(seen)) { throw new InvalidOperationException($"the queue pair read a different entry at {_hostHead} than the check"); }
                QueueMath.AdvanceHead(ref _hostHead, ref _hostPhase, entries);
                if (verdict != CompletionVerdict.Valid)
                {
                    if (!_hostileSeen)
                    {
                        throw new InvalidOperationException($"a correct device's entry was rejected: {CompletionCheck.Describe(verdict, c, queueId, entries, window)}");
                    }
                    _ = CompletionCheck.Describe(verdict, c, queueId, entries, window) ?? throw new InvalidOperationException($"no text for violation {verdict}");
                    _faulted = true;
                    break;
                }
                _lastSqHead = c.SubmissionQueueHead;
                Retire(c.CommandId);
            }
            pair.RingCompletions();
        }

        private void Retire(ushort cid)
        {
            if (cid >= _capacity || !_inFlight[cid]) { throw new InvalidOperationException($"CID {cid} retired, but it is not in flight"); }
            if (++_retiredPerCid[cid] > _submittedPerCid[cid]) { throw new InvalidOperationException($"CID {cid} retired {_retiredPerCid[cid]} times but submitted {_submittedPerCid[cid]}"); }
            _inFlight[cid] = false;
            _free.Push(cid);
            _retired++;
        }

        private void CheckCounts()
        {
            int inFlight = _inFlight.Count(f => f);
            if (_free.Count + inFlight != _capacity || _submitted - _retired != inFlight)
            {
                throw new InvalidOperationException($"{_free.Count} free + {inFlight} in flight CIDs of {_capacity}; {_submitted} submitted, {_retired} retired");
            }
        }
    }

    /// <summary>The host's in-flight flags, as the check sees them: read-only, and no CID past the table.</summary>
    private readonly ref struct InFlightView(ReadOnlySpan<bool> inFlight) : IOutstandingCommands
    {
        private readonly ReadOnlySpan<bool> _inFlight = inFlight;

        public bool IsOutstanding(ushort commandId) => commandId < _inFlight.Length && _inFlight[commandId];
    }

    /// <summary>DMA memory from the heap, with invented device addresses: the queue pair only needs somewhere to put its rings.</summary>
    private sealed class HeapDma : IDmaAllocator
    {
        public List<DmaBuffer> Buffers { get; } = [];

        public DmaAddressing Addressing => DmaAddressing.Iova;

        public DmaBuffer Allocate(ulong size, DmaAllocationOptions? options = null)
        {
            var b = new HeapBuffer(size, new DmaAddress(0x1_0000_0000UL * (ulong)(Buffers.Count + 1)), options?.Name);
            Buffers.Add(b);
            return b;
        }
    }

    private sealed unsafe class HeapBuffer(ulong length, DmaAddress at, string? name)
        : DmaBuffer((nint)NativeMemory.AlignedAlloc((nuint)length, 4096), length, name)
    {
        protected override DmaAddress DeviceAddressAt(ulong offset) => new(at.Value + offset);

        protected override ulong ContiguousLengthAt(ulong offset) => Length - offset;

        // SAFETY: the pointer came from AlignedAlloc in the constructor and is freed once, when the buffer is disposed.
        protected override void ReleaseMemory() => NativeMemory.AlignedFree((void*)Pointer);
    }

    /// <summary>BAR 0 reduced to the two doorbells of one queue pair (§3.1.24, §3.1.25): it remembers the last value of each.</summary>
    private sealed class DoorbellRecorder(int queueId) : IDeviceRegion
    {
        private readonly ulong _sqDoorbell = ControllerRegister.SubmissionTailDoorbell(queueId, 0);
        private readonly ulong _cqDoorbell = ControllerRegister.CompletionHeadDoorbell(queueId, 0);

        public int SubmissionTail { get; private set; }

        public int CompletionHead { get; private set; }

        public RegionInfo Info { get; } = new() { Index = PciRegion.Bar0, Flags = RegionFlags.Read | RegionFlags.Write, Size = 0x2000, Offset = 0 };

        public ulong Size => Info.Size;

        public bool IsMapped(ulong offset) => false;

        public void Write32(ulong offset, uint value)
        {
            if (offset == _sqDoorbell) { SubmissionTail = (int)value; }
            else if (offset == _cqDoorbell) { CompletionHead = (int)value; }
            else { throw new InvalidOperationException($"write of 0x{value:x} to BAR 0 offset 0x{offset:x}, which is neither doorbell of queue {queueId}"); }
        }

        public byte Read8(ulong offset) => throw Unexpected(offset);
        public ushort Read16(ulong offset) => throw Unexpected(offset);
        public uint Read32(ulong offset) => throw Unexpected(offset);
        public ulong Read64(ulong offset) => throw Unexpected(offset);
        public void Write8(ulong offset, byte value) => throw Unexpected(offset);
        public void Write16(ulong offset, ushort value) => throw Unexpected(offset);
        public void Write64(ulong offset, ulong value) => throw Unexpected(offset);
        public void Read(ulong offset, Span<byte> destination) => throw Unexpected(offset);
        public void Write(ulong offset, ReadOnlySpan<byte> source) => throw Unexpected(offset);
        public void Dispose() { }

        private static InvalidOperationException Unexpected(ulong offset) => new($"the queue pair touched BAR 0 at 0x{offset:x} other than by a 32-bit doorbell write");
    }
}
