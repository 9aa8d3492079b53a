using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Nvme.Protocol;

namespace Vfio.Nvme.Tests.Emulation;

/// <summary>
/// An NVMe controller emulated in process behind <see cref="IPciDevice"/> (OpenVMM's approach: drivers are
/// tested against an emulated device through the same interface as real hardware). It follows the rules the
/// driver must honour strictly, and fails loudly where a lenient device would not: PRP alignment, queue sizes,
/// queue creation order, CC writes while not ready. Commands run synchronously inside the doorbell write, or on
/// a background thread when <see cref="Deferred"/> is set. The I/O path allocates nothing, so the driver's
/// allocation can be measured through it.
/// </summary>
internal sealed unsafe class EmulatedNvme : IPciDevice
{
    public const int BarSize = 0x4000;
    public const int MsixVectors = 8;
    private const int MaxQueues = 64;

    private readonly Lock _lock = new();
    private readonly byte[] _disk;
    private readonly ConfigRegion _config;
    private readonly SubmissionState[] _sqs = new SubmissionState[MaxQueues + 1];
    private readonly CompletionState[] _cqs = new CompletionState[MaxQueues + 1];
    private EmulatedInterruptSet? _msix;
    private uint _cc, _csts, _aqa;
    private ulong _asq, _acq;
    private int _grantedQueues;
    private bool _queuesConfigured;
    private Thread? _worker;
    private volatile bool _stopWorker;
    private readonly AutoResetEvent _kick = new(false);

    private struct SubmissionState
    {
        public bool Exists;
        public ulong Base;
        public int Size, Head, Tail, CqId;
    }

    private struct CompletionState
    {
        public bool Exists;
        public ulong Base;
        public int Size, Head, Tail, Vector;
        public bool Phase, InterruptsEnabled;
    }

    public EmulatedNvme(int blockSize = 512, ulong blocks = 8192, int doorbellStride = 0, byte mdts = 5)
    {
        BlockSize = blockSize;
        BlockCount = blocks;
        DoorbellStride = doorbellStride;
        Mdts = mdts;
        _disk = new byte[blocks * (ulong)blockSize];
        Log = new EventLog();
        Allocator = new FakeDmaAllocator(Log);
        _config = new ConfigRegion(this);
        Config = new PciConfigSpace(_config);
        PowerOnReset();
    }

    public EventLog Log { get; }
    public FakeDmaAllocator Allocator { get; }
    public int BlockSize { get; }
    public ulong BlockCount { get; }
    public int DoorbellStride { get; }
    public byte Mdts { get; }
    public Span<byte> Disk => _disk;
    public string Serial { get; init; } = "EMU-0001";
    public string Model { get; init; } = "Emulated NVMe Ctrl";
    public OptionalNvmCommands Oncs { get; init; } = OptionalNvmCommands.WriteZeroes | OptionalNvmCommands.DatasetManagement;

    /// <summary>Run commands on a background thread a little after the doorbell instead of inside it.</summary>
    public bool Deferred { get; set; }

    /// <summary>Ignore I/O doorbells: commands never complete (for timeouts).</summary>
    public bool Stalled { get; set; }

    /// <summary>Fail the next I/O command with this status.</summary>
    public NvmeStatus? FailNextIo { get; set; }

    /// <summary>Submission tail doorbell writes per queue.</summary>
    public int[] SubmissionDoorbells { get; } = new int[MaxQueues + 1];

    public long IoCommands { get; private set; }
    public int MaxPrpListEntries { get; private set; }
    public int ControllerResets { get; private set; }
    public int FunctionResets { get; private set; }
    public bool Enabled => (_cc & 1) != 0;
    public int QueuesAlive { get { int n = 0; for (int i = 1; i <= MaxQueues; i++) { if (_sqs[i].Exists) { n++; } } return n; } }

    /// <summary>Sets CSTS.CFS: the controller stops processing until it is disabled.</summary>
    public void SetFatal() { lock (_lock) { _csts |= 2; } }

    /// <summary>
    /// Makes the calling thread wait once for the emulator's lock while another thread holds it. The lock creates
    /// its wait event lazily on first contention, a managed allocation on the waiting thread; allocation tests call
    /// this during warm-up so that one-time cost of the emulation is not counted against the driver.
    /// </summary>
    public void PrimeLockContention()
    {
        using var held = new ManualResetEventSlim();
        var holder = new Thread(() => { lock (_lock) { held.Set(); Thread.Sleep(50); } });
        holder.Start();
        held.Wait();
        lock (_lock) { }
        holder.Join();
    }

    // ------------------------------------------------------------------ IPciDevice

    public PciAddress Address { get; } = new(0, 0, 6, 0);
    public DeviceBackend Backend => DeviceBackend.Emulated;
    public bool IsDmaIsolated => true;
    public DeviceInfo Info => new(DeviceFlags.Pci | DeviceFlags.Reset, 9, 5);
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma => Allocator;

    public RegionInfo GetRegionInfo(int index) => index switch
    {
        PciRegion.Bar0 => new RegionInfo { Index = 0, Flags = RegionFlags.Read | RegionFlags.Write | RegionFlags.Mmap, Size = BarSize, Offset = 0 },
        PciRegion.Config => _config.Info,
        _ => new RegionInfo { Index = index, Flags = RegionFlags.None, Size = 0, Offset = 0 },
    };

    public IDeviceRegion OpenRegion(int index) => index switch
    {
        PciRegion.Bar0 => new Bar(this),
        PciRegion.Config => _config,
        _ => throw new ArgumentException($"region {index} does not exist", nameof(index)),
    };

    public IrqInfo GetIrqInfo(IrqIndex index) =>
        new(index, IrqFlags.Eventfd | IrqFlags.NoResize, index == IrqIndex.Msix ? MsixVectors : 0);

    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        if (index != IrqIndex.Msix || count is < 1 or > MsixVectors) { throw new ArgumentOutOfRangeException(nameof(count)); }
        lock (_lock)
        {
            if (_msix is not null) { throw new InvalidOperationException("MSI-X already enabled"); }
            _msix = new EmulatedInterruptSet(count, () => { lock (_lock) { _msix = null; } Log.Add("msix off"); });
            return _msix;
        }
    }

    public void Reset()
    {
        lock (_lock)
        {
            FunctionResets++;
            PowerOnReset();
        }
    }

    /// <summary>Cancelled by <see cref="RequestRelease"/>, as the kernel's request interrupt would.</summary>
    public CancellationToken ReleaseRequested => _releaseRequest.Token;

    /// <summary>Asks for the device back, like a hot-unplug.</summary>
    public void RequestRelease() => _releaseRequest.Cancel();

    /// <summary>True after <see cref="Dispose"/>.</summary>
    public bool Closed { get; private set; }

    private readonly CancellationTokenSource _releaseRequest = new();

    public void Dispose()
    {
        if (!Closed) { Log.Add("device closed"); }
        Closed = true;
        _stopWorker = true;
        _kick.Set();
        _worker?.Join();
    }

    // ------------------------------------------------------------------ registers (NVMe 1.4 §3.1)

    private ulong Cap =>
        2047UL                                  // MQES: 2048 entries
        | 1UL << 16                             // CQR
        | 15UL << 24                            // TO: 7.5 s
        | (ulong)DoorbellStride << 32
        | 1UL << 37;                            // CSS: NVM

    private void PowerOnReset()
    {
        _cc = 0;
        _csts = 0;
        _aqa = 0;
        _asq = _acq = 0;
        DeleteAllQueues();
    }

    private void DeleteAllQueues()
    {
        Array.Clear(_sqs);
        Array.Clear(_cqs);
        _queuesConfigured = false;
    }

    private ulong ReadRegister(ulong offset, int width)
    {
        lock (_lock)
        {
            ulong value = offset switch
            {
                ControllerRegister.Cap => Cap,
                ControllerRegister.Cap + 4 => Cap >> 32,
                ControllerRegister.Vs => 0x0001_0400,
                ControllerRegister.Cc => _cc,
                ControllerRegister.Csts => _csts,
                ControllerRegister.Aqa => _aqa,
                ControllerRegister.Asq => _asq,
                ControllerRegister.Acq => _acq,
                _ => 0,
            };
            return width == 8 ? value : value & 0xFFFF_FFFF;
        }
    }

    private void WriteRegister(ulong offset, ulong value, int width)
    {
        lock (_lock)
        {
            if (offset >= ControllerRegister.DoorbellBase)
            {
                Doorbell(offset, (uint)value);
                return;
            }
            switch (offset)
            {
                case ControllerRegister.Cc: WriteCc((uint)value); break;
                case ControllerRegister.Aqa: _aqa = (uint)value; break;
                case ControllerRegister.Asq: Assert.Equal(8, width); _asq = value; break;
                case ControllerRegister.Acq: Assert.Equal(8, width); _acq = value; break;
                default: throw new InvalidOperationException($"write of 0x{value:x} to read-only or unknown register 0x{offset:x}");
            }
        }
    }

    private void WriteCc(uint value)
    {
        bool wasEnabled = (_cc & 1) != 0, enable = (value & 1) != 0;
        var shn = (value >> 14) & 3;
        _cc = value;
        if (shn != 0 && enable)
        {
            Log.Add("shutdown");
            _csts = (_csts & ~(3u << 2)) | 2u << 2;       // SHST = complete at once
        }
        if (!wasEnabled && enable)
        {
            Assert.True((_asq & 0xFFF) == 0 && (_acq & 0xFFF) == 0, "admin queues must be page aligned");
            Assert.Equal(6u, (value >> 16) & 0xF);    // IOSQES
            Assert.Equal(4u, (value >> 20) & 0xF);    // IOCQES
            Assert.Equal(0u, (value >> 7) & 0xF);     // MPS 4 KiB
            int sqSize = (int)(_aqa & 0xFFF) + 1, cqSize = (int)((_aqa >> 16) & 0xFFF) + 1;
            _sqs[0] = new SubmissionState { Exists = true, Base = _asq, Size = sqSize, CqId = 0 };
            _cqs[0] = new CompletionState { Exists = true, Base = _acq, Size = cqSize, Phase = true, InterruptsEnabled = true, Vector = 0 };
            _csts = 1;
            Log.Add("enable");
        }
        else if (wasEnabled && !enable)
        {
            // CC.EN 1 -> 0: controller reset; every queue is deleted (NVMe 1.4 §3.1.5).
            DeleteAllQueues();
            _csts = 0;
            ControllerResets++;
            Log.Add("disable");
        }
    }

    private void Doorbell(ulong offset, uint value)
    {
        ulong stride = 4UL << DoorbellStride;
        if (!((offset - ControllerRegister.DoorbellBase) % stride == 0)) { Assert.Fail($"doorbell write at 0x{offset:x} is off the stride {stride}"); }
        int index = (int)((offset - ControllerRegister.DoorbellBase) / stride);
        int qid = index / 2;
        if (!(qid <= MaxQueues)) { Assert.Fail($"doorbell of queue {qid}"); }
        if (index % 2 == 0)
        {
            ref var sq = ref _sqs[qid];
            if (!(sq.Exists)) { Assert.Fail($"SQ {qid} tail doorbell rung, but the queue does not exist"); }
            if (!(value < sq.Size)) { Assert.Fail($"SQ {qid} tail {value} beyond size {sq.Size}"); }
            sq.Tail = (int)value;
            SubmissionDoorbells[qid]++;
            if (Deferred) { StartWorker(); _kick.Set(); }
            else { Process(qid); }
        }
        else
        {
            ref var cq = ref _cqs[qid];
            if (!(cq.Exists)) { Assert.Fail($"CQ {qid} head doorbell rung, but the queue does not exist"); }
            if (!(value < cq.Size)) { Assert.Fail($"CQ {qid} head {value} beyond size {cq.Size}"); }
            cq.Head = (int)value;
        }
    }

    private void StartWorker()
    {
        if (_worker is not null) { return; }
        _worker = new Thread(() =>
        {
            while (!_stopWorker)
            {
                _kick.WaitOne(5);
                Thread.Sleep(1);
                lock (_lock)
                {
                    for (int q = 0; q <= MaxQueues; q++) { if (_sqs[q].Exists) { Process(q); } }
                }
            }
        }) { IsBackground = true, Name = "emulated nvme" };
        _worker.Start();
    }

    private void Process(int qid)
    {
        if ((_cc & 1) == 0 || (_csts & 2) != 0) { return; }        // disabled or fatal: nothing is fetched
        if (qid != 0 && Stalled) { return; }
        ref var sq = ref _sqs[qid];
        while (sq.Exists && sq.Head != sq.Tail)
        {
            var command = *(NvmeCommand*)Map(sq.Base + (ulong)sq.Head * NvmeCommand.Size, NvmeCommand.Size);
            sq.Head = sq.Head + 1 == sq.Size ? 0 : sq.Head + 1;
            int cqid = sq.CqId;
            uint dw0 = 0;
            var status = qid == 0 ? Admin(command, ref dw0) : Io(command);
            Post(cqid, qid, sq.Head, command.CommandId, status, dw0);
            if (!sq.Exists) { break; }      // the command deleted its own queue
        }
    }

    private void Post(int cqid, int sqid, int sqHead, ushort cid, NvmeStatus status, uint dw0)
    {
        ref var cq = ref _cqs[cqid];
        int next = cq.Tail + 1 == cq.Size ? 0 : cq.Tail + 1;
        if (!(next != cq.Head)) { Assert.Fail($"CQ {cqid} overflow: the host let more commands be outstanding than the CQ holds"); }
        var entry = (NvmeCompletion*)Map(cq.Base + (ulong)cq.Tail * NvmeCompletion.Size, NvmeCompletion.Size);
        entry->Dw0 = dw0;
        entry->Dw1 = 0;
        entry->SubmissionQueueHead = (ushort)sqHead;
        entry->SubmissionQueueId = (ushort)sqid;
        entry->CommandId = cid;
        // The phase tag goes last: once it flips, the host may read the entry.
        Volatile.Write(ref entry->StatusAndPhase, (ushort)(status.Value << 1 | (cq.Phase ? 1 : 0)));
        cq.Tail = next;
        if (next == 0) { cq.Phase = !cq.Phase; }
        if (cq.InterruptsEnabled && _msix is { } msix && cq.Vector < msix.Count)
        {
            msix.Signal(cq.Vector);
        }
    }

    private nint Map(ulong address, int length)
    {
        var p = Allocator.Translate(address);
        if (!(p != 0)) { Assert.Fail($"device DMA to unmapped address 0x{address:x}"); }
        if (!(Allocator.Translate(address + (ulong)length - 1) == p + length - 1)) { Assert.Fail($"DMA of {length} bytes at 0x{address:x} crosses into unmapped or discontiguous memory"); }
        Assert.True(Config.BusMaster, "device DMA with bus mastering off");
        return p;
    }

    // ------------------------------------------------------------------ admin commands

    private static NvmeStatus Generic(byte code, bool dnr = true) => NvmeStatus.Create(StatusCodeType.Generic, code, doNotRetry: dnr);
    private static NvmeStatus Specific(byte code) => NvmeStatus.Create(StatusCodeType.CommandSpecific, code, doNotRetry: true);

    private NvmeStatus Admin(in NvmeCommand c, ref uint dw0)
    {
        switch ((AdminOpcode)c.Opcode)
        {
            case AdminOpcode.Identify:
                return Identify(c);
            case AdminOpcode.SetFeatures when (c.Cdw10 & 0xFF) == (uint)FeatureId.NumberOfQueues:
                if (_queuesConfigured) { return Generic(0x0C); }   // Command Sequence Error: once per enable
                _queuesConfigured = true;
                int asked = (int)Math.Min(c.Cdw11 & 0xFFFF, c.Cdw11 >> 16) + 1;
                _grantedQueues = Math.Min(asked, MaxQueues);
                dw0 = (uint)(_grantedQueues - 1) | (uint)(_grantedQueues - 1) << 16;
                return default;
            case AdminOpcode.CreateIoCompletionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF), size = (int)(c.Cdw10 >> 16) + 1;
                bool pc = (c.Cdw11 & 1) != 0, ien = (c.Cdw11 & 2) != 0;
                int vector = (int)(c.Cdw11 >> 16);
                if (qid < 1 || qid > _grantedQueues || _cqs[qid].Exists) { return Specific(0x01); }
                if (size < 2 || size > 2048) { return Specific(0x02); }
                if (!pc || (c.Prp1 & 0xFFF) != 0) { return Generic(0x02); }
                if (ien && (_msix is null || vector >= _msix.Count)) { return Specific(0x08); }
                _cqs[qid] = new CompletionState { Exists = true, Base = c.Prp1, Size = size, Phase = true, InterruptsEnabled = ien, Vector = vector };
                return default;
            }
            case AdminOpcode.CreateIoSubmissionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF), size = (int)(c.Cdw10 >> 16) + 1, cqid = (int)(c.Cdw11 >> 16);
                if (qid < 1 || qid > _grantedQueues || _sqs[qid].Exists) { return Specific(0x01); }
                if (cqid < 1 || !_cqs[cqid].Exists) { return Specific(0x00); }
                if (size < 2 || size > 2048) { return Specific(0x02); }
                if ((c.Cdw11 & 1) == 0 || (c.Prp1 & 0xFFF) != 0) { return Generic(0x02); }
                _sqs[qid] = new SubmissionState { Exists = true, Base = c.Prp1, Size = size, CqId = cqid };
                return default;
            }
            case AdminOpcode.DeleteIoSubmissionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF);
                if (qid < 1 || qid > MaxQueues || !_sqs[qid].Exists) { return Specific(0x01); }
                _sqs[qid] = default;
                return default;
            }
            case AdminOpcode.DeleteIoCompletionQueue:
            {
                int qid = (int)(c.Cdw10 & 0xFFFF);
                if (qid < 1 || qid > MaxQueues || !_cqs[qid].Exists) { return Specific(0x01); }
                for (int i = 1; i <= MaxQueues; i++)
                {
                    if (_sqs[i].Exists && _sqs[i].CqId == qid) { return Specific(0x0C); }
                }
                _cqs[qid] = default;
                return default;
            }
            default:
                return Generic(0x01);
        }
    }

    private NvmeStatus Identify(in NvmeCommand c)
    {
        var data = new byte[4096];
        switch ((IdentifyCns)(c.Cdw10 & 0xFF))
        {
            case IdentifyCns.Controller:
                BinaryPrimitives.WriteUInt16LittleEndian(data, 0x1b36);
                BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(2), 0x1af4);
                Pad(data.AsSpan(4, 20), Serial);
                Pad(data.AsSpan(24, 40), Model);
                Pad(data.AsSpan(64, 8), "1.0");
                data[77] = Mdts;
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(80), 0x0001_0400);
                data[512] = 0x66;
                data[513] = 0x44;
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(516), 1);
                BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(520), (ushort)Oncs);
                data[525] = 1;
                break;
            case IdentifyCns.Namespace:
                if (c.Nsid != 1) { return Generic(0x0B); }
                BinaryPrimitives.WriteUInt64LittleEndian(data, BlockCount);
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(8), BlockCount);
                data[25] = 1;                                   // two formats: 512 and 4096
                data[26] = (byte)(BlockSize == 4096 ? 1 : 0);
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(128), 9u << 16);
                BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(132), 12u << 16);
                break;
            case IdentifyCns.ActiveNamespaces:
                if (c.Nsid < 1) { BinaryPrimitives.WriteUInt32LittleEndian(data, 1); }
                break;
            default:
                return Generic(0x02);
        }
        var status = Transfer(c.Prp1, c.Prp2, 4096, data, toHost: true);
        return status;
    }

    private static void Pad(Span<byte> field, string text)
    {
        field.Fill((byte)' ');
        Encoding.ASCII.GetBytes(text, field);
    }

    // ------------------------------------------------------------------ I/O commands

    private NvmeStatus Io(in NvmeCommand c)
    {
        IoCommands++;
        if (FailNextIo is { } injected)
        {
            FailNextIo = null;
            return injected;
        }
        if (c.Nsid != 1) { return Generic(0x0B); }
        switch ((NvmOpcode)c.Opcode)
        {
            case NvmOpcode.Flush:
                return default;
            case NvmOpcode.Read:
            case NvmOpcode.Write:
            {
                if (!InRange(c.StartingLba, c.BlockCount)) { return Generic(0x80); }
                int bytes = c.BlockCount * BlockSize;
                if (bytes > (4096 << Mdts)) { return Generic(0x02); }
                var range = _disk.AsSpan((int)(c.StartingLba * (ulong)BlockSize), bytes);
                return Transfer(c.Prp1, c.Prp2, bytes, range, toHost: (NvmOpcode)c.Opcode == NvmOpcode.Read);
            }
            case NvmOpcode.WriteZeroes:
                if (!InRange(c.StartingLba, c.BlockCount)) { return Generic(0x80); }
                _disk.AsSpan((int)(c.StartingLba * (ulong)BlockSize), c.BlockCount * BlockSize).Clear();
                return default;
            case NvmOpcode.DatasetManagement:
            {
                int ranges = (int)(c.Cdw10 & 0xFF) + 1;
                var list = (DsmRange*)Map(c.Prp1, ranges * 16);
                for (int i = 0; i < ranges; i++)
                {
                    if (!InRange(list[i].StartingLba, (int)list[i].BlockCount)) { return Generic(0x80); }
                    if ((c.Cdw11 & 4) != 0)
                    {
                        _disk.AsSpan((int)(list[i].StartingLba * (ulong)BlockSize), (int)list[i].BlockCount * BlockSize).Clear();
                    }
                }
                return default;
            }
            default:
                return Generic(0x01);
        }
    }

    private bool InRange(ulong lba, int blocks) => lba < BlockCount && (ulong)blocks <= BlockCount - lba;

    /// <summary>Moves data per PRP1/PRP2 (NVMe 1.4 §4.3), checking every rule a controller may rely on.</summary>
    private NvmeStatus Transfer(ulong prp1, ulong prp2, int length, Span<byte> data, bool toHost)
    {
        const ulong page = 4096;
        if ((prp1 & 3) != 0) { return Generic(0x13); }
        int first = (int)Math.Min((ulong)length, page - (prp1 & (page - 1)));
        Copy(prp1, data[..first], toHost);
        int done = first;
        if (done == length) { return default; }
        if (length - done <= (int)page)
        {
            if ((prp2 & (page - 1)) != 0) { return Generic(0x13); }
            Copy(prp2, data[done..], toHost);
            return default;
        }
        if ((prp2 & 7) != 0) { return Generic(0x13); }
        ulong entryAddress = prp2;
        int entries = 0;
        while (done < length)
        {
            ulong entry = *(ulong*)Map(entryAddress, 8);
            entries++;
            bool lastInPage = ((entryAddress + 8) & (page - 1)) == 0;
            if (lastInPage && length - done > (int)page)
            {
                // The last entry of a list page with more than one page to go is a pointer to the next list.
                if ((entry & 7) != 0) { return Generic(0x13); }
                entryAddress = entry;
                continue;
            }
            if ((entry & (page - 1)) != 0) { return Generic(0x13); }
            int chunk = Math.Min(length - done, (int)page);
            Copy(entry, data.Slice(done, chunk), toHost);
            done += chunk;
            entryAddress += 8;
        }
        MaxPrpListEntries = Math.Max(MaxPrpListEntries, entries);
        return default;
    }

    private void Copy(ulong address, Span<byte> data, bool toHost)
    {
        var memory = new Span<byte>((void*)Map(address, data.Length), data.Length);
        if (toHost) { data.CopyTo(memory); } else { memory.CopyTo(data); }
    }

    // ------------------------------------------------------------------ regions

    private sealed class Bar(EmulatedNvme device) : IDeviceRegion
    {
        public RegionInfo Info => device.GetRegionInfo(0);
        public ulong Size => BarSize;
        public bool IsMapped(ulong offset) => offset < BarSize;
        public byte Read8(ulong offset) => throw new NotSupportedException("NVMe registers are read 32 or 64 bits wide");
        public ushort Read16(ulong offset) => throw new NotSupportedException("NVMe registers are read 32 or 64 bits wide");
        public uint Read32(ulong offset) { Check(offset, 4); return (uint)device.ReadRegister(offset, 4); }
        public ulong Read64(ulong offset) { Check(offset, 8); return device.ReadRegister(offset, 8); }
        public void Write8(ulong offset, byte value) => throw new NotSupportedException("NVMe registers are written 32 or 64 bits wide");
        public void Write16(ulong offset, ushort value) => throw new NotSupportedException("NVMe registers are written 32 or 64 bits wide");
        public void Write32(ulong offset, uint value) { Check(offset, 4); device.WriteRegister(offset, value, 4); }
        public void Write64(ulong offset, ulong value) { Check(offset, 8); device.WriteRegister(offset, value, 8); }
        public void Read(ulong offset, Span<byte> destination) => throw new NotSupportedException();
        public void Write(ulong offset, ReadOnlySpan<byte> source) => throw new NotSupportedException();
        public void Dispose() => device.Log.Add("bar closed");

        private static void Check(ulong offset, int width)
        {
            if (!(offset + (ulong)width <= BarSize && offset % (ulong)width == 0)) { Assert.Fail($"BAR0 access at 0x{offset:x}, width {width}"); }
        }
    }

    private sealed class ConfigRegion(EmulatedNvme device) : IDeviceRegion
    {
        private readonly byte[] _bytes = MakeConfig();

        public RegionInfo Info { get; } = new() { Index = PciRegion.Config, Flags = RegionFlags.Read | RegionFlags.Write, Size = 256, Offset = 0 };
        public ulong Size => 256;
        public bool IsMapped(ulong offset) => false;
        public byte Read8(ulong o) => _bytes[o];
        public ushort Read16(ulong o) => BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan((int)o));
        public uint Read32(ulong o) => BinaryPrimitives.ReadUInt32LittleEndian(_bytes.AsSpan((int)o));
        public ulong Read64(ulong o) => BinaryPrimitives.ReadUInt64LittleEndian(_bytes.AsSpan((int)o));
        public void Write8(ulong o, byte v) => _bytes[o] = v;
        public void Write16(ulong o, ushort v)
        {
            if (o == 4)
            {
                bool before = (Read16(4) & 4) != 0, after = (v & 4) != 0;
                if (before != after) { device.Log.Add(after ? "bus master on" : "bus master off"); }
            }
            BinaryPrimitives.WriteUInt16LittleEndian(_bytes.AsSpan((int)o), v);
        }
        public void Write32(ulong o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(_bytes.AsSpan((int)o), v);
        public void Write64(ulong o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(_bytes.AsSpan((int)o), v);
        public void Read(ulong o, Span<byte> d) => _bytes.AsSpan((int)o, d.Length).CopyTo(d);
        public void Write(ulong o, ReadOnlySpan<byte> s) => s.CopyTo(_bytes.AsSpan((int)o));
        public void Dispose() { }

        private static byte[] MakeConfig()
        {
            var b = new byte[256];
            BinaryPrimitives.WriteUInt16LittleEndian(b, 0x1b36);
            BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(2), 0x0010);
            b[0x09] = 0x02; b[0x0A] = 0x08; b[0x0B] = 0x01;     // class 01:08:02, NVM Express
            return b;
        }
    }
}

/// <summary>MSI-X vectors of the emulated device: counters with one awaiter each, like eventfds.</summary>
internal sealed class EmulatedInterruptSet(int count, Action onDispose) : IInterruptSet
{
    private readonly EmulatedVector[] _vectors = [.. Enumerable.Range(0, count).Select(i => new EmulatedVector(i))];
    public IrqIndex Index => IrqIndex.Msix;
    public int Count => _vectors.Length;
    public IInterruptVector this[int vector] => _vectors[vector];
    public long Signals(int vector) => _vectors[vector].Signals;
    public void Signal(int vector) => _vectors[vector].Trigger();
    public void Dispose() => onDispose();
}

internal sealed class EmulatedVector(int vector) : IInterruptVector
{
    private readonly Lock _lock = new();
    private ulong _pending;
    private TaskCompletionSource<ulong>? _waiter;

    public int Vector => vector;
    public long Signals { get; private set; }

    public ValueTask<ulong> WaitAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            if (_pending > 0)
            {
                var n = _pending;
                _pending = 0;
                return new ValueTask<ulong>(n);
            }
            Assert.Null(_waiter);
            var tcs = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiter = tcs;
            cancellationToken.Register(() =>
            {
                lock (_lock) { if (_waiter == tcs) { _waiter = null; } }
                tcs.TrySetCanceled(cancellationToken);
            });
            return new ValueTask<ulong>(tcs.Task);
        }
    }

    public ulong Poll()
    {
        lock (_lock)
        {
            var n = _pending;
            _pending = 0;
            return n;
        }
    }

    public void Trigger()
    {
        TaskCompletionSource<ulong>? waiter;
        lock (_lock)
        {
            Signals++;
            waiter = _waiter;
            _waiter = null;
            if (waiter is null) { _pending++; }
        }
        waiter?.TrySetResult(1);
    }

    public void Unmask() { }
}
