using System.Buffers.Binary;
using System.Net;
using System.Runtime.InteropServices;
using Vfio.Devices;
using Vfio.Dma;
using Vfio.Testing;
using Vfio.VirtioNet.Tests.Emulation;

namespace Vfio.Igb.Tests;

/// <summary>
/// An in-memory 82576 behind <see cref="IPciDevice"/>: a register file with the side effects the driver relies on
/// (CTRL.RST self-clearing and resetting the registers, EERD, MDIC and the link, clear-on-read statistics) and a
/// small device loop that consumes transmit descriptors when the tail moves and fills receive descriptors when a
/// test delivers a frame. Tests also write raw (hostile) write-backs into the rings through it. In MSI-X mode
/// (GPIE.Multiple_MSIX, §7.3) it routes the write-backs and link changes through IVAR/IVAR_MISC to EICR bits and
/// signals the vectors of its <see cref="FakeInterruptSet"/> as the 82576 does: EIMS enables, EIAC auto-clears,
/// EIAM with GPIE.EIAME auto-masks. EITR is recorded, not modelled. Register access is serialised by one lock shared
/// by every fake, so a port delivering into its peer never deadlocks against the peer's own thread.
/// </summary>
internal sealed unsafe class FakeIgb : IPciDevice
{
    public const int BarSize = 0x20000;
    private static readonly object s_lock = new();
    private readonly CancellationTokenSource _release = new();
    private readonly byte[] _config = new byte[256];
    private readonly FakeBar _bar;

    /// <summary>
    /// An 82576 with <paramref name="mac"/> in its EEPROM. <paramref name="memory"/>: DMA memory shared with another
    /// fake (two ports receiving into one pool, as <c>vfio net fwd</c> runs them); its own otherwise.
    /// </summary>
    public FakeIgb(byte[]? mac = null, ushort deviceId = 0x10C9, EmulatedDma? memory = null, string address = "0000:00:0b.0")
    {
        Mac = mac ?? [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
        Memory = memory ?? new EmulatedDma();
        Address = PciAddress.Parse(address);
        BinaryPrimitives.WriteUInt16LittleEndian(_config, 0x8086);
        BinaryPrimitives.WriteUInt16LittleEndian(_config.AsSpan(2), deviceId);
        Config = new PciConfigSpace(new ConfigRegion(_config));
        _bar = new FakeBar(this);
        PowerOnReset();
    }

    public uint[] Regs { get; } = new uint[BarSize / 4];
    public byte[] Mac { get; }
    public bool EepromAnswers { get; set; } = true;
    public bool LinkComesUp { get; set; } = true;
    public bool LinkUp { get; private set; }
    /// <summary>Ignore CTRL.RST (a wedged device).</summary>
    public bool IgnoreReset { get; set; }
    /// <summary>Process transmit descriptors as soon as TDT moves.</summary>
    public bool AutoTransmit { get; set; } = true;
    public int ResetCount { get; private set; }
    /// <summary>Every register write, in order: (offset, value).</summary>
    public List<(ulong Offset, uint Value)> Writes { get; } = [];
    /// <summary>
    /// The port at the other end of the cable: what this one sends is delivered to it (the queue its RSS picks)
    /// instead of being recorded in <see cref="Sent"/>.
    /// </summary>
    public FakeIgb? Peer { get; set; }
    /// <summary>Frames the device sent: queue, bytes, POPTS bits of the data descriptor.</summary>
    public List<(int Queue, byte[] Frame, ulong Popts)> Sent { get; } = [];
    /// <summary>Context descriptors the device saw: queue, low and high quadwords.</summary>
    public List<(int Queue, ulong Low, ulong High)> Contexts { get; } = [];
    public EmulatedDma Memory { get; }

    public PciAddress Address { get; }
    public DeviceBackend Backend => DeviceBackend.Emulated;
    public bool IsDmaIsolated => true;
    public DeviceInfo Info => new(DeviceFlags.Pci | DeviceFlags.Reset, 9, 5);
    public PciConfigSpace Config { get; }
    public IDmaAllocator Dma => Memory;
    public CancellationToken ReleaseRequested => _release.Token;

    public void RequestRelease() => _release.Cancel();

    public RegionInfo GetRegionInfo(int index) => index == PciRegion.Bar0
        ? new RegionInfo { Index = 0, Flags = RegionFlags.Read | RegionFlags.Write, Size = BarSize, Offset = 0 }
        : new RegionInfo { Index = index, Flags = RegionFlags.None, Size = 0, Offset = 0 };

    public IDeviceRegion OpenRegion(int index) => index == PciRegion.Bar0 ? _bar : throw new ArgumentException($"region {index} does not exist");
    public IrqInfo GetIrqInfo(IrqIndex index) => new(index, IrqFlags.Eventfd | IrqFlags.NoResize, index == IrqIndex.Msix ? MsixVectors : 0);

    /// <summary>MSI-X vectors the function offers (QEMU's igb and an 82576 function: 10).</summary>
    public int MsixVectors { get; set; } = 10;

    /// <summary>Every MSI-X set the driver enabled, oldest first.</summary>
    public List<FakeInterruptSet> InterruptSets { get; } = [];

    /// <summary>The MSI-X set enabled now, or null.</summary>
    public FakeInterruptSet? Msix => InterruptSets.LastOrDefault(i => !i.IsDisposed);

    public IInterruptSet EnableInterrupts(IrqIndex index, int count)
    {
        if (index != IrqIndex.Msix) { throw new NotSupportedException($"the fake igb models MSI-X only, not {index}"); }
        if (count < 1 || count > MsixVectors) { throw new ArgumentOutOfRangeException(nameof(count), count, $"the fake offers {MsixVectors} MSI-X vectors"); }
        lock (s_lock)
        {
            if (Msix is not null) { throw new InvalidOperationException("MSI-X is already enabled"); }
            var set = new FakeInterruptSet(count, this, Writes.Count);
            InterruptSets.Add(set);
            return set;
        }
    }

    /// <summary>Called by a set as it is disposed: where in <see cref="Writes"/> that happened, and how much DMA memory was live.</summary>
    internal (int Writes, int LiveBuffers) DisposePoint()
    {
        lock (s_lock) { return (Writes.Count, Memory.LiveBuffers); }
    }
    public void Reset() => PowerOnReset();
    public void Dispose() { }

    public uint this[ulong offset] { get => Regs[offset / 4]; set => Regs[offset / 4] = value; }

    public bool RegisterWritten(ulong offset) => Writes.Any(w => w.Offset == offset);

    /// <summary>The index in <see cref="Writes"/> of the first write to <paramref name="offset"/> matching <paramref name="match"/>, or -1.</summary>
    public int FirstWrite(ulong offset, Func<uint, bool>? match = null) => Writes.FindIndex(w => w.Offset == offset && (match?.Invoke(w.Value) ?? true));

    private void PowerOnReset()
    {
        Array.Clear(Regs);
        this[IgbReg.Ctrl] = IgbCtrl.FullDuplex | (1u << 3);   // LRST set after reset, as QEMU's igb
        this[IgbReg.Rxdctl(0)] = IgbQueueControl.Enable;
        this[IgbReg.Txdctl(0)] = IgbQueueControl.Enable;
        this[IgbReg.Ral(0)] = BinaryPrimitives.ReadUInt32LittleEndian(Mac);
        this[IgbReg.Rah(0)] = BinaryPrimitives.ReadUInt16LittleEndian(Mac.AsSpan(4)) | IgbRah.AddressValid;
        LinkUp = false;
    }

    private uint Read(ulong offset)
    {
        lock (s_lock) { return ReadLocked(offset); }
    }

    private uint ReadLocked(ulong offset)
    {
        switch (offset)
        {
            case IgbReg.Status:
                uint status = (2u << IgbStatus.SpeedShift) | IgbStatus.FullDuplex;
                if (LinkUp) { status |= IgbStatus.LinkUp; }
                if ((this[IgbReg.Ctrl] & IgbCtrl.GioMasterDisable) == 0) { status |= IgbStatus.GioMasterEnable; }
                return status;
            case IgbReg.Icr:
                uint icr = this[IgbReg.Icr];
                this[IgbReg.Icr] = 0;
                return icr;
        }
        if (offset is >= 0x4000 and < 0x4100)
        {
            // §8.19: statistics clear when read; the high half of an octet pair clears both halves.
            uint value = this[offset];
            this[offset] = 0;
            if (offset is IgbStatsRegisters.Gorch or IgbStatsRegisters.Gotch or IgbStatsRegisters.Torh or IgbStatsRegisters.Toth) { this[offset - 4] = 0; }
            return value;
        }
        return this[offset];
    }

    private void Write(ulong offset, uint value)
    {
        lock (s_lock) { WriteLocked(offset, value); }
    }

    private void WriteLocked(ulong offset, uint value)
    {
        Writes.Add((offset, value));
        switch (offset)
        {
            case IgbReg.Ims:
                // Enabling a cause already latched in ICR raises it at once (QEMU's igb_set_ims does too).
                uint latched = this[IgbReg.Icr] & value & ~this[offset];
                this[offset] |= value;
                if (latched != 0) { RaiseOther(); }
                return;
            case IgbReg.Imc:
                this[IgbReg.Ims] &= ~value;
                this[offset] = value;
                return;
            case IgbReg.Eims:
                // Unmasking a vector whose cause is latched in EICR sends its message at once.
                uint before = this[IgbReg.Eicr] & this[IgbReg.Eims];
                this[offset] |= value;
                SendMessages(this[IgbReg.Eicr] & this[IgbReg.Eims] & ~before);
                return;
            case IgbReg.Eimc:
                this[IgbReg.Eims] &= ~value;
                this[offset] = value;
                return;
            case IgbReg.Eicr:
                this[offset] &= ~value;   // write 1 to clear
                return;
            case IgbReg.Ctrl:
                if ((value & IgbCtrl.Reset) != 0 && !IgnoreReset)
                {
                    ResetCount++;
                    PowerOnReset();
                    return;
                }
                this[offset] = IgnoreReset ? value : value & ~IgbCtrl.Reset;
                return;
            case IgbReg.Eerd:
                if ((value & IgbEerd.Start) == 0 || !EepromAnswers) { this[offset] = value & ~IgbEerd.Done; return; }
                uint word = (value >> IgbEerd.AddressShift) & 0x3FFF;
                uint data = word < 3 ? (uint)(Mac[2 * word] | Mac[2 * word + 1] << 8) : 0xFFFF;
                this[offset] = IgbEerd.Done | (word << IgbEerd.AddressShift) | (data << IgbEerd.DataShift);
                return;
            case IgbReg.Mdic:
                uint phy = (value >> IgbMdic.PhyShift) & 0x1F, reg = (value >> IgbMdic.RegisterShift) & 0x1F;
                if (phy != IgbMdic.InternalPhy) { this[offset] = value | IgbMdic.Ready | IgbMdic.Error; return; }
                if ((value & IgbMdic.OpWrite) != 0 && reg == IgbMdic.PhyControl && (value & IgbMdic.BmcrRestartAutoNeg) != 0)
                {
                    // Auto-negotiation done: the link comes up and ICR.LSC latches, as QEMU's igb does when it ends.
                    LinkUp = LinkComesUp;
                    if (LinkUp) { this[IgbReg.Icr] |= IgbIcr.LinkStatusChange; }
                }
                this[offset] = value | IgbMdic.Ready;
                return;
        }
        this[offset] = value;
        for (int q = 0; q < IgbReg.MaxQueues; q++)
        {
            if (offset == IgbReg.Tdt(q) && AutoTransmit) { ProcessTransmitLocked(q); }
        }
    }

    // ------------------------------------------------------------------ interrupts (§7.3, MSI-X mode)

    private bool MsixMode => (this[IgbReg.Gpie] & IgbGpie.MultipleMsix) != 0;

    /// <summary>Vectors whose message went out, in order.</summary>
    public List<int> Messages { get; } = [];

    /// <summary>Sets <paramref name="causes"/> in EICR and sends the messages of those now both pending and enabled.</summary>
    private void RaiseExtended(uint causes)
    {
        if (!MsixMode) { return; }
        uint before = this[IgbReg.Eicr] & this[IgbReg.Eims];
        this[IgbReg.Eicr] |= causes;
        SendMessages(this[IgbReg.Eicr] & this[IgbReg.Eims] & ~before);
    }

    private void SendMessages(uint vectors)
    {
        for (int v = 0; v < 32; v++)
        {
            uint bit = 1u << v;
            if ((vectors & bit) == 0) { continue; }
            Messages.Add(v);
            var set = Msix;
            if (set is not null && v < set.Count) { set.Vector(v).Trigger(); }
            this[IgbReg.Eicr] &= ~(this[IgbReg.Eiac] & bit);
            if ((this[IgbReg.Gpie] & IgbGpie.AutoMaskEnable) != 0) { this[IgbReg.Eims] &= ~(this[IgbReg.Eiam] & bit); }
        }
    }

    /// <summary>The EICR bit IVAR allocates to queue <paramref name="q"/>'s receive or transmit write-backs, or 0.</summary>
    private uint QueueCause(int q, bool receive)
    {
        var (register, shift) = IgbIvar.Entry(q, receive);
        uint entry = (this[IgbReg.Ivar(register)] >> shift) & 0xFF;
        return (entry & IgbIvar.Valid) != 0 ? 1u << (int)(entry & 0x1F) : 0;
    }

    /// <summary>Raises receive queue <paramref name="q"/>'s cause as a write-back does (for hostile write-backs written raw).</summary>
    public void RaiseReceive(int q)
    {
        lock (s_lock) { RaiseExtended(QueueCause(q, receive: true)); }
    }

    /// <summary>The link goes <paramref name="up"/> or down: STATUS.LU follows, ICR.LSC is set and, enabled in IMS, raises the "other" vector.</summary>
    public void SetLink(bool up)
    {
        lock (s_lock)
        {
            LinkUp = up;
            this[IgbReg.Icr] |= IgbIcr.LinkStatusChange;
            if ((this[IgbReg.Ims] & IgbIcr.LinkStatusChange) != 0) { RaiseOther(); }
        }
    }

    /// <summary>An enabled ICR cause: the EICR bit IVAR_MISC allocates to the "other" causes.</summary>
    private void RaiseOther()
    {
        uint entry = (this[IgbReg.IvarMisc] >> IgbIvar.MiscOtherShift) & 0xFF;
        if ((entry & IgbIvar.Valid) != 0) { RaiseExtended(1u << (int)(entry & 0x1F)); }
    }

    // ------------------------------------------------------------------ the device loop

    private nint Translate(ulong address, int length) => Memory.Translate(address, (ulong)length);

    private ulong RingBase(ulong bal, ulong bah) => this[bal] | (ulong)this[bah] << 32;

    /// <summary>The host pointer of descriptor <paramref name="slot"/> of receive queue <paramref name="q"/>.</summary>
    public ulong* RxDescriptor(int q, int slot) => (ulong*)Translate(RingBase(IgbReg.Rdbal(q), IgbReg.Rdbah(q)) + (ulong)(16 * slot), 16);

    public ulong* TxDescriptor(int q, int slot) => (ulong*)Translate(RingBase(IgbReg.Tdbal(q), IgbReg.Tdbah(q)) + (ulong)(16 * slot), 16);

    public int RxRingSize(int q) => (int)(this[IgbReg.Rdlen(q)] / 16);

    public void ProcessTransmit(int q)
    {
        lock (s_lock) { ProcessTransmitLocked(q); }
    }

    private void ProcessTransmitLocked(int q)
    {
        if ((this[IgbReg.Tctl] & IgbTctl.Enable) == 0 || (this[IgbReg.Txdctl(q)] & IgbQueueControl.Enable) == 0) { return; }
        int size = (int)(this[IgbReg.Tdlen(q)] / 16);
        while (this[IgbReg.Tdh(q)] != this[IgbReg.Tdt(q)])
        {
            int slot = (int)this[IgbReg.Tdh(q)];
            var d = TxDescriptor(q, slot);
            ulong low = d[0], high = d[1];
            if ((high & AdvancedDescriptor.TxDtypData) == AdvancedDescriptor.TxDtypData)
            {
                int length = (int)(high & 0xFFFF);
                var frame = new ReadOnlySpan<byte>((void*)Translate(low, length), length).ToArray();
                if (Peer is { } peer) { peer.Deliver(frame); }
                else { Sent.Add((q, frame, high & (AdvancedDescriptor.TxPopulateIpChecksum | AdvancedDescriptor.TxPopulateL4Checksum))); }
                this[IgbStatsRegisters.Gptc]++;
                this[IgbStatsRegisters.Tpt]++;
                this[IgbStatsRegisters.Gotcl] += (uint)length + 4;
            }
            else
            {
                Contexts.Add((q, low, high));
            }
            if ((high & AdvancedDescriptor.TxCmdReportStatus) != 0) { d[1] = high | AdvancedDescriptor.TxStatusDone; }
            this[IgbReg.Tdh(q)] = (uint)((slot + 1) % size);
            if ((high & AdvancedDescriptor.TxCmdReportStatus) != 0) { RaiseExtended(QueueCause(q, receive: false)); }
        }
    }

    /// <summary>The receive queue RSS picks for an IPv4 frame with ports (TCP/UDP), or 0.</summary>
    public int QueueFor(byte[] frame, out uint hash, out byte type)
    {
        hash = 0;
        type = 0;
        if ((this[IgbReg.Mrqc] & 7) != IgbMrqc.EnableRss || BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) != 0x0800) { return 0; }
        var key = new byte[40];
        for (int i = 0; i < 10; i++) { BinaryPrimitives.WriteUInt32LittleEndian(key.AsSpan(4 * i), this[IgbReg.Rssrk + 4UL * (uint)i]); }
        int ihl = (frame[14] & 0xF) * 4;
        var src = new IPAddress(frame.AsSpan(26, 4));
        var dst = new IPAddress(frame.AsSpan(30, 4));
        bool ports = frame[23] is 6 or 17;
        hash = ports
            ? ToeplitzHash.ComputeFlow(key, src, dst, BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14 + ihl)), BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(16 + ihl)))
            : ToeplitzHash.ComputeFlow(key, src, dst);
        type = (byte)(frame[23] == 6 ? 1 : frame[23] == 17 ? 7 : 2);
        int entry = (int)(hash & 0x7F);
        return (int)((this[IgbReg.Reta + 4UL * (uint)(entry / 4)] >> (8 * (entry % 4))) & 0xF);
    }

    /// <summary>
    /// Delivers <paramref name="frame"/> as the device would: the queue RSS picks (or <paramref name="queue"/>), the
    /// descriptor at its head, DMA of the data, then the write-back with the status quadword last. False when the
    /// queue had no descriptor (RNBC counts it).
    /// </summary>
    public bool Deliver(byte[] frame, int? queue = null, ulong extraStatus = 0)
    {
        lock (s_lock) { return DeliverLocked(frame, queue, extraStatus); }
    }

    private bool DeliverLocked(byte[] frame, int? queue, ulong extraStatus)
    {
        int q = queue ?? QueueFor(frame, out _, out _);
        QueueFor(frame, out uint hash, out byte type);
        if ((this[IgbReg.Rctl] & IgbRctl.Enable) == 0 || (this[IgbReg.Rxdctl(q)] & IgbQueueControl.Enable) == 0) { return false; }
        int size = RxRingSize(q);
        uint head = this[IgbReg.Rdh(q)];
        if (head == this[IgbReg.Rdt(q)]) { this[IgbStatsRegisters.Rnbc]++; return false; }
        var d = RxDescriptor(q, (int)head);
        ulong address = d[0];
        frame.CopyTo(new Span<byte>((void*)Translate(address, frame.Length), frame.Length));
        d[0] = type | ((ulong)hash << 32);
        Volatile.Write(ref d[1], AdvancedDescriptor.RxStatusDone | AdvancedDescriptor.RxStatusEndOfPacket | extraStatus | ((ulong)(uint)frame.Length << 32));
        this[IgbReg.Rdh(q)] = (uint)((head + 1) % size);
        this[IgbStatsRegisters.Gprc]++;
        this[IgbStatsRegisters.Tpr]++;
        this[IgbStatsRegisters.Gorcl] += (uint)frame.Length + 4;
        // The write-back is in memory before the message goes out (§7.3: the interrupt follows the write-back).
        RaiseExtended(QueueCause(q, receive: true));
        return true;
    }

    /// <summary>Writes a raw write-back into slot <paramref name="slot"/> of receive queue <paramref name="q"/> (hostile).</summary>
    public void WriteRxRaw(int q, int slot, ulong low, ulong high)
    {
        var d = RxDescriptor(q, slot);
        d[0] = low;
        Volatile.Write(ref d[1], high);
    }

    /// <summary>Writes a raw descriptor into slot <paramref name="slot"/> of transmit queue <paramref name="q"/> (hostile).</summary>
    public void WriteTxRaw(int q, int slot, ulong low, ulong high)
    {
        var d = TxDescriptor(q, slot);
        d[0] = low;
        Volatile.Write(ref d[1], high);
    }

    private sealed class FakeBar(FakeIgb device) : IDeviceRegion
    {
        public RegionInfo Info => device.GetRegionInfo(0);
        public ulong Size => BarSize;
        public bool IsMapped(ulong offset) => true;
        public uint Read32(ulong offset) { Check(offset); return device.Read(offset); }
        public void Write32(ulong offset, uint value) { Check(offset); device.Write(offset, value); }
        public byte Read8(ulong offset) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public ushort Read16(ulong offset) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public ulong Read64(ulong offset) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public void Write8(ulong offset, byte value) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public void Write16(ulong offset, ushort value) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public void Write64(ulong offset, ulong value) => throw new NotSupportedException("the 82576 registers are 32 bits wide (§8.1)");
        public void Read(ulong offset, Span<byte> destination) => throw new NotSupportedException();
        public void Write(ulong offset, ReadOnlySpan<byte> source) => throw new NotSupportedException();
        public void Dispose() { }

        private static void Check(ulong offset)
        {
            if (offset % 4 != 0 || offset >= BarSize) { throw new ArgumentOutOfRangeException(nameof(offset), $"BAR0 access at 0x{offset:x}"); }
        }
    }

    private sealed class ConfigRegion(byte[] bytes) : IDeviceRegion
    {
        public RegionInfo Info => new() { Index = PciRegion.Config, Flags = RegionFlags.Read | RegionFlags.Write, Size = (ulong)bytes.Length, Offset = 0 };
        public ulong Size => (ulong)bytes.Length;
        public bool IsMapped(ulong offset) => false;
        public byte Read8(ulong o) => bytes[o];
        public ushort Read16(ulong o) => BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan((int)o));
        public uint Read32(ulong o) => BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)o));
        public ulong Read64(ulong o) => BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan((int)o));
        public void Write8(ulong o, byte v) => bytes[o] = v;
        public void Write16(ulong o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((int)o), v);
        public void Write32(ulong o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)o), v);
        public void Write64(ulong o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)o), v);
        public void Read(ulong o, Span<byte> d) => bytes.AsSpan((int)o, d.Length).CopyTo(d);
        public void Write(ulong o, ReadOnlySpan<byte> s) => s.CopyTo(bytes.AsSpan((int)o));
        public void Dispose() { }
    }
}

/// <summary>
/// MSI-X vectors of the fake: counters with one waiter each, like eventfds; disposing fails the waits pending
/// (<see cref="ObjectDisposedException"/>), as closing an eventfd does.
/// </summary>
internal sealed class FakeInterruptSet : IInterruptSet
{
    private readonly EmulatedVector[] _vectors;
    private readonly FakeIgb _device;

    public FakeInterruptSet(int count, FakeIgb device, int enabledAtWrite)
    {
        _vectors = [.. Enumerable.Range(0, count).Select(i => new EmulatedVector(i))];
        _device = device;
        EnabledAtWrite = enabledAtWrite;
    }

    public IrqIndex Index => IrqIndex.Msix;
    public int Count => _vectors.Length;
    public bool IsDisposed { get; private set; }
    /// <summary>How many register writes the device had seen when the set was enabled.</summary>
    public int EnabledAtWrite { get; }
    /// <summary>How many register writes the device had seen, and the DMA buffers live, when the set was disposed.</summary>
    public (int Writes, int LiveBuffers)? DisposedAt { get; private set; }

    public IInterruptVector this[int vector]
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return _vectors[vector];
        }
    }

    public EmulatedVector Vector(int vector) => _vectors[vector];

    public void Dispose()
    {
        if (IsDisposed) { return; }
        DisposedAt = _device.DisposePoint();
        IsDisposed = true;
        foreach (var v in _vectors) { v.Close(); }
    }
}

/// <summary>Test frames: Ethernet II + IPv4 + UDP with given addresses and ports.</summary>
internal static class Frames
{
    public static byte[] Udp(byte[] destinationMac, string source, string destination, ushort sourcePort, ushort destinationPort, int payload = 32, byte fill = 0xA5)
    {
        var f = new byte[14 + 20 + 8 + payload];
        destinationMac.CopyTo(f, 0);
        byte[] srcMac = [0x02, 0, 0, 0, 0, 1];
        srcMac.CopyTo(f, 6);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(12), 0x0800);
        f[14] = 0x45;
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(16), (ushort)(20 + 8 + payload));
        f[22] = 64;
        f[23] = 17;
        IPAddress.Parse(source).TryWriteBytes(f.AsSpan(26, 4), out _);
        IPAddress.Parse(destination).TryWriteBytes(f.AsSpan(30, 4), out _);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(34), sourcePort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(36), destinationPort);
        BinaryPrimitives.WriteUInt16BigEndian(f.AsSpan(38), (ushort)(8 + payload));
        f.AsSpan(42).Fill(fill);
        return f;
    }
}
