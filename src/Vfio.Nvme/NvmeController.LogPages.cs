using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

public sealed partial class NvmeController
{
    /// <summary>Largest log page read <see cref="GetLogPage"/> takes: 16 MiB (read in pieces of <see cref="MaxAdminTransferBytes"/>).</summary>
    public const int MaxLogPageBytes = 16 << 20;

    /// <summary>
    /// Reads <paramref name="length"/> bytes of log page <paramref name="logPageId"/> from byte <paramref name="offset"/>
    /// (Get Log Page, NVMe 2.0 §5.16; 1.4 §5.14). Reads longer than <see cref="MaxAdminTransferBytes"/> are split into
    /// pieces at increasing offsets, under one hold of the admin lock; every piece but the last retains the
    /// asynchronous event (RAE = 1), so the event is cleared only once the whole page has been read, as nvme-cli does.
    /// </summary>
    /// <param name="logPageId">LID.</param>
    /// <param name="nsid">0 or FFFFFFFFh for the controller, else an NSID 1..NN.</param>
    /// <param name="offset">Byte offset into the page, dword aligned; non-zero needs LPA bit 2 (extended data).</param>
    /// <param name="length">Bytes to read: 4..<see cref="MaxLogPageBytes"/>, a whole number of dwords.</param>
    /// <param name="retainAsyncEvent">RAE: leave the asynchronous event that this page reports uncleared.</param>
    /// <exception cref="ArgumentOutOfRangeException">A parameter is outside the range named in the message.</exception>
    /// <exception cref="ArgumentException">An offset or a multi-piece read on a controller without LPA bit 2.</exception>
    /// <exception cref="NvmeCommandException">The controller refused the read (e.g. Invalid Log Page).</exception>
    public byte[] GetLogPage(byte logPageId, uint nsid, ulong offset, int length, bool retainAsyncEvent = false)
    {
        ValidateLogPageRequest(nsid, offset, length);
        var data = new byte[length];
        lock (_adminLock)
        {
            ThrowIfUnusable();
            ThrowIfFaulted();
            ReadLogPageLocked(logPageId, nsid, offset, data, retainAsyncEvent);
        }
        return data;
    }

    /// <summary>The SMART / Health Information log (02h), for the controller (NSID FFFFFFFFh) or one namespace when LPA bit 0 allows it.</summary>
    /// <exception cref="ArgumentException">A per-namespace read on a controller without LPA bit 0.</exception>
    public SmartLog GetSmartLog(uint nsid = uint.MaxValue, bool retainAsyncEvent = false)
    {
        if (nsid is not (0 or uint.MaxValue) && (Identity.LogPageAttributes & LogPageAttributes.SmartPerNamespace) == 0)
        {
            throw new ArgumentException($"{_device.Address} keeps SMART / Health data for the controller only (LPA bit 0 clear): use nsid 0 or 0xFFFFFFFF, not {nsid}", nameof(nsid));
        }
        return SmartLog.Parse(GetLogPage((byte)LogPageId.SmartHealth, nsid, 0, SmartLog.Size, retainAsyncEvent));
    }

    /// <summary>The Error Information log (01h): ELPE + 1 entries are read, the empty ones (error count 0) left out, newest first.</summary>
    public IReadOnlyList<ErrorLogEntry> GetErrorLog(bool retainAsyncEvent = false)
    {
        int entries = Identity.ErrorLogPageEntries + 1;
        int bytes = entries * ErrorLogEntry.Size;
        if (bytes > MaxAdminTransferBytes && (Identity.LogPageAttributes & LogPageAttributes.ExtendedData) == 0)
        {
            // Without offsets only the first piece can be read.
            entries = MaxAdminTransferBytes / ErrorLogEntry.Size;
            bytes = entries * ErrorLogEntry.Size;
        }
        return ErrorLogEntry.ParseLog(GetLogPage((byte)LogPageId.ErrorInformation, 0, 0, bytes, retainAsyncEvent), entries);
    }

    /// <summary>The Firmware Slot Information log (03h).</summary>
    public FirmwareSlotLog GetFirmwareSlotLog() =>
        FirmwareSlotLog.Parse(GetLogPage((byte)LogPageId.FirmwareSlot, 0, 0, FirmwareSlotLog.Size));

    /// <summary>The Changed Namespace List log (04h); reading it with RAE = 0 clears it and re-arms the notice (§5.2.1).</summary>
    public ChangedNamespaceList GetChangedNamespaceList(bool retainAsyncEvent = false) =>
        ChangedNamespaceList.Parse(GetLogPage((byte)LogPageId.ChangedNamespaceList, 0, 0, ChangedNamespaceList.Size, retainAsyncEvent));

    /// <summary>The Commands Supported and Effects log (05h); controllers without LPA bit 1 may refuse it (Invalid Log Page).</summary>
    public CommandEffectsLog GetCommandEffectsLog() =>
        CommandEffectsLog.Parse(GetLogPage((byte)LogPageId.CommandsSupportedAndEffects, 0, 0, CommandEffectsLog.Size));

    private void ValidateLogPageRequest(uint nsid, ulong offset, int length)
    {
        if (length < 4 || length > MaxLogPageBytes || (length & 3) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"a log page read is 4 to {MaxLogPageBytes} bytes, a whole number of dwords (NUMD counts dwords)");
        }
        if ((offset & 3) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, "the log page offset is a multiple of 4 (LPOL bits 1:0 are reserved)");
        }
        if (offset > ulong.MaxValue - (ulong)length)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), offset, $"offset + length must stay below 2^64 (length {length})");
        }
        uint nn = Identity.NamespaceCount;
        if (nsid is not (0 or uint.MaxValue) && nsid > nn)
        {
            throw new ArgumentOutOfRangeException(nameof(nsid), nsid, $"the NSID is 0, 0xFFFFFFFF or 1..{nn} (NN)");
        }
        bool extended = (Identity.LogPageAttributes & LogPageAttributes.ExtendedData) != 0;
        if (!extended && offset != 0)
        {
            throw new ArgumentException($"{_device.Address} does not support log page offsets (Identify Controller LPA bit 2, extended data, is clear); " +
                "read from offset 0", nameof(offset));
        }
        if (!extended && length > MaxAdminTransferBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, $"{_device.Address} supports no log page offsets (LPA bit 2 clear), so one read " +
                $"moves at most {MaxAdminTransferBytes} bytes");
        }
    }

    /// <summary>Reads into <paramref name="data"/> in pieces, the admin lock held and the request validated.</summary>
    private void ReadLogPageLocked(byte logPageId, uint nsid, ulong offset, Span<byte> data, bool retainAsyncEvent)
    {
        int piece = MaxAdminTransferBytes & ~3;
        int done = 0;
        while (done < data.Length)
        {
            int n = Math.Min(piece, data.Length - done);
            bool last = done + n == data.Length;
            var command = NvmeCommand.GetLogPage(logPageId, nsid, offset + (ulong)done, n, retainAsyncEvent: !last || retainAsyncEvent);
            ExecuteAdminWithDataLocked(command, data.Slice(done, n), NvmeDataDirection.FromDevice);
            done += n;
        }
    }
}
