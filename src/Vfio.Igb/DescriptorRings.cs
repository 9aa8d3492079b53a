using System.Runtime.CompilerServices;
using Vfio.Dma;
using Vfio.Net;

namespace Vfio.Igb;

/// <summary>
/// The driver's side of one advanced-descriptor ring (82576 datasheet §7.1.6 receive, §7.2.2 transmit): which
/// packet buffer sits in which slot and how many bytes were offered, kept in driver memory only. The device's
/// write-backs are read once, checked, and never trusted for bookkeeping. One slot always stays empty so head ==
/// tail means "nothing for the device" (§7.1.6.1).
/// </summary>
internal abstract unsafe class DescriptorRing
{
    private readonly nint _descriptors;
    protected readonly PacketBuffer[] Slots;
    private readonly PciAddress _device;

    protected DescriptorRing(nint descriptors, int size, PciAddress device, string name)
    {
        if (size < 8 || size % 8 != 0 || size > 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(size), size, "rings hold a multiple of 8 descriptors, 8 to 4096 (§8.10.6)");
        }
        _descriptors = descriptors;
        Size = size;
        Slots = new PacketBuffer[size];
        _device = device;
        Name = name;
        Clear();
    }

    public string Name { get; }
    public int Size { get; }
    /// <summary>The next slot the driver fills; the value written to the tail register.</summary>
    public int Tail { get; protected set; }
    /// <summary>The oldest slot the device holds (the next to complete).</summary>
    public int Clean { get; protected set; }
    /// <summary>Slots the device holds.</summary>
    public int InFlight { get; protected set; }
    /// <summary>Slots the driver may fill now.</summary>
    public int FreeSlots => Size - 1 - InFlight;
    /// <summary>Why the ring is faulted, or null.</summary>
    public DeviceProtocolViolationException? Fault { get; private set; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected ulong* Descriptor(int slot) => (ulong*)(_descriptors + slot * AdvancedDescriptor.Size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected void Write(int slot, (ulong Low, ulong High) descriptor)
    {
        // SAFETY: slot < Size and the ring memory holds Size descriptors; the device reads it only after the tail
        // write that follows a barrier (IgbDevice rings the doorbell).
        var d = Descriptor(slot);
        d[0] = descriptor.Low;
        d[1] = descriptor.High;
    }

    /// <summary>The high quadword of a slot, read once: the status the device writes last (§7.1.6.2, §7.2.3.2.4).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected ulong ReadHigh(int slot) =>
        // SAFETY: slot < Size; a volatile read so the later read of the low quadword is not hoisted above it.
        Volatile.Read(ref Descriptor(slot)[1]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected ulong ReadLow(int slot) =>
        // SAFETY: as ReadHigh.
        Volatile.Read(ref Descriptor(slot)[0]);

    /// <summary>Writes <paramref name="descriptor"/> into the tail slot, owned by <paramref name="packet"/>, and hands the slot over.</summary>
    // Inlined, as every per-packet step of the rings: under emulation (QEMU/TCG) each call's return is an indirect
    // jump the translator resolves by a lookup, and the forwarding loop makes several per packet otherwise.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected void Put(PacketBuffer packet, (ulong Low, ulong High) descriptor)
    {
        int slot = Tail;
        Write(slot, descriptor);
        Slots[slot] = packet;
        Tail = RingMath.Next(slot, Size);
        InFlight++;
    }

    /// <summary>Takes the oldest slot back: its packet, a cleared status (no stale DD), the clean index moved on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected PacketBuffer TakeOldest()
    {
        int slot = Clean;
        var packet = Slots[slot];
        Slots[slot] = default;
        // SAFETY: slot < Size. Only the high quadword: both write-back formats keep DD there (§7.1.5.2, §7.2.3.2.4),
        // and the low one is rewritten whole when the slot is offered again.
        Descriptor(slot)[1] = 0;
        Clean = RingMath.Next(slot, Size);
        InFlight--;
        return packet;
    }

    /// <summary>Forgets every slot: the ring is empty, all descriptors zero (done before the device sees the ring).</summary>
    public void Clear()
    {
        // SAFETY: the ring memory holds Size descriptors.
        new Span<byte>((void*)_descriptors, Size * AdvancedDescriptor.Size).Clear();
        Array.Clear(Slots);
        Tail = 0;
        Clean = 0;
        InFlight = 0;
        Fault = null;
    }

    /// <summary>Hands every buffer the ring holds to <paramref name="release"/> (after the device was stopped) and empties it.</summary>
    public void ReleaseAll(Action<PacketBuffer> release)
    {
        for (int i = 0; i < Slots.Length; i++)
        {
            if (Slots[i].IsValid) { release(Slots[i]); }
        }
        Clear();
    }

    /// <summary>Throws if the ring is faulted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ThrowIfFaulted()
    {
        if (Fault is not null) { ThrowFaulted(); }
    }

    private void ThrowFaulted() => throw new IgbQueueFaultedException(_device, Name, Fault!);

    /// <summary>Marks the ring faulted and returns the exception to throw.</summary>
    protected DeviceProtocolViolationException Violation(string where, string seen)
    {
        var e = new DeviceProtocolViolationException(_device, $"{Name} {where}", seen);
        Fault = e;
        return e;
    }

    /// <summary>
    /// The slot at <see cref="Tail"/> is never the device's (one slot stays empty), and the driver cleared its status
    /// when it last took the slot back: a done bit there is a write-back to a descriptor the driver did not offer.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    protected void CheckTailUntouched(ulong doneBit)
    {
        if ((ReadHigh(Tail) & doneBit) != 0)
        {
            throw Violation("descriptor write-back (DD)", $"slot {Tail} has DD set but the driver never handed it to the device ({InFlight} slot(s) in flight from slot {Clean})");
        }
    }

    /// <summary>Checks a head register value against the slots handed to the device.</summary>
    public void CheckHead(uint head, string register)
    {
        if (!RingMath.HeadValid(head, Clean, Tail, Size))
        {
            throw Violation(register, $"head {head} lies outside the {InFlight} slot(s) handed over ({Clean}..{Tail}) of a {Size}-slot ring");
        }
    }
}

/// <summary>A receive ring of advanced one-buffer descriptors (§7.1.5).</summary>
internal sealed unsafe class RxRing(nint descriptors, int size, PciAddress device, string name, int bufferLength)
    : DescriptorRing(descriptors, size, device, name)
{
    /// <summary>The bytes each buffer offers the device (SRRCTL.BSIZEPACKET).</summary>
    public int BufferLength { get; } = bufferLength;

    /// <summary>Dword 1 of the write-back carries the RSS hash (RXCSUM.PCSD set).</summary>
    public bool RssHashInDescriptor { get; set; }

    /// <summary>Puts <paramref name="packet"/> (whose data starts at <paramref name="dataAddress"/>) in the tail slot.</summary>
    public void Offer(PacketBuffer packet, DmaAddress dataAddress) => Put(packet, AdvancedDescriptor.EncodeRxRead(dataAddress.Value));

    /// <summary>
    /// DD is set in the oldest slot: a write-back waits there. A hint for waking a consumer only; <see cref="TryTake"/>
    /// checks the write-back (and a DD on a slot never offered) when the consumer comes to take it.
    /// </summary>
    public bool WriteBackPending => (ReadHigh(Clean) & AdvancedDescriptor.RxStatusDone) != 0;

    /// <summary>
    /// Takes the oldest slot back if the device is done with it, after checking its write-back: DD, EOP (every
    /// buffer holds the longest frame the port accepts, so a frame never spans two), a length between 1 and the
    /// bytes offered. False when the device is not done.
    /// </summary>
    /// <exception cref="DeviceProtocolViolationException">The write-back breaks the rules; the ring is now faulted.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryTake(out PacketBuffer packet, out AdvancedDescriptor.RxWriteBack writeBack)
    {
        packet = default;
        writeBack = default;
        int slot = Clean;
        // The status is read once: what is checked is what is used.
        ulong high = InFlight == 0 ? 0 : ReadHigh(slot);
        if ((high & AdvancedDescriptor.RxStatusDone) == 0)
        {
            CheckTailUntouched(AdvancedDescriptor.RxStatusDone);
            return false;
        }
        writeBack = AdvancedDescriptor.DecodeRxWriteBack(ReadLow(slot), high, RssHashInDescriptor);
        if (!writeBack.EndOfPacket || writeBack.Length == 0 || writeBack.Length > BufferLength)
        {
            throw BadWriteBack(slot, writeBack);
        }
        packet = TakeOldest();
        return true;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private DeviceProtocolViolationException BadWriteBack(int slot, in AdvancedDescriptor.RxWriteBack writeBack) =>
        !writeBack.EndOfPacket
            ? Violation("receive write-back EOP (§7.1.5.2)",
                $"slot {slot}: a frame continues past a {BufferLength}-byte buffer, longer than any frame the port accepts (RCTL.LPE is off)")
            : Violation("receive write-back PKT_LEN (§7.1.5.2)", $"slot {slot}: length {writeBack.Length}, the buffer offered holds 1..{BufferLength} bytes");
}

/// <summary>A transmit ring of advanced data and context descriptors (§7.2.3.2).</summary>
internal sealed unsafe class TxRing(nint descriptors, int size, PciAddress device, string name)
    : DescriptorRing(descriptors, size, device, name)
{
    /// <summary>The offload whose context descriptor the device holds in context slot 0, if any.</summary>
    public IgbTxOffload? Context { get; set; }

    /// <summary>Puts a descriptor in the tail slot; <paramref name="packet"/> is default for a context descriptor.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enqueue(PacketBuffer packet, (ulong Low, ulong High) descriptor) => Put(packet, descriptor);

    /// <summary>
    /// Takes the oldest slot back if its DD is set (every descriptor asks for status, RS); <paramref name="packet"/>
    /// is default for a context descriptor. False when the device is not done.
    /// </summary>
    /// <exception cref="DeviceProtocolViolationException">DD on a slot never offered; the ring is now faulted.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryReclaim(out PacketBuffer packet)
    {
        packet = default;
        if (InFlight == 0 || !AdvancedDescriptor.TxDone(ReadHigh(Clean)))
        {
            CheckTailUntouched(AdvancedDescriptor.TxStatusDone);
            return false;
        }
        packet = TakeOldest();
        return true;
    }
}
