using Vfio.Dma;
using Vfio.Spec.Nvme;

namespace Vfio.Nvme;

/// <summary>
/// The DMA audit of one NVMe command (<see cref="DmaAudit"/>), run where the submission queue entry is written and
/// before the doorbell: it walks PRP1, PRP2 and the PRP list the way the controller will (NVMe 1.4 §4.3) and checks
/// every page the controller will touch against the windows leased to the command.
/// </summary>
internal static unsafe class PrpAudit
{
    /// <summary>Where a command is going and what it leases.</summary>
    /// <param name="Device">The controller.</param>
    /// <param name="Queue">The queue's name in violations.</param>
    /// <param name="PageShift">log2 of the controller's memory page size (CC.MPS).</param>
    /// <param name="Data">The data window: exactly the bytes the command transfers; no buffer when it moves none.</param>
    /// <param name="List">The PRP list page leased to the command (its slot's page), if any.</param>
    /// <param name="ListPointer">The CPU address of <paramref name="List"/>'s first byte (the audit reads the list there).</param>
    /// <param name="ListAddress">The device address of that byte.</param>
    /// <param name="Contiguous">PRP1 addresses all of <paramref name="Data"/> as one physically contiguous range and PRP2 is
    /// unused (Create I/O Submission/Completion Queue with PC = 1, NVMe 1.4 §5.3, §5.4).</param>
    public readonly record struct Lease(PciAddress Device, string Queue, int PageShift, DmaWindow Data, DmaWindow List, nint ListPointer, DmaAddress ListAddress,
        bool Contiguous = false);

    /// <exception cref="DmaAuditViolationException">A PRP entry or list entry points outside what the command leases.</exception>
    public static void Check(in NvmeCommand command, in Lease lease)
    {
        ulong bytes = lease.Data.Buffer is null ? 0 : lease.Data.Length;
        if (bytes == 0)
        {
            // No data: §4.3 leaves both fields unused, and the driver writes them 0.
            if (command.Prp1.Value != 0) { Fail(command, lease, "PRP1", command.Prp1, 1, null, "the command moves no data, yet PRP1 is set"); }
            if (command.Prp2.Value != 0) { Fail(command, lease, "PRP2", command.Prp2, 1, null, "the command moves no data, yet PRP2 is set"); }
            return;
        }
        if (lease.Data.Buffer is { IsInUse: false } unclaimed)
        {
            Fail(command, lease, "PRP1", command.Prp1, bytes, DmaAudit.Describe(unclaimed),
                "the data buffer holds no device claim (AddDeviceUse/MarkInUse) for this command");
        }
        ulong page = 1UL << lease.PageShift, mask = page - 1;
        ulong first = lease.Contiguous ? bytes : Math.Min(bytes, page - (command.Prp1.Value & mask));
        Entry(command, lease, "PRP1", -1, command.Prp1, first, lease.Data);
        ulong remaining = bytes - first;
        if (remaining == 0)
        {
            if (command.Prp2.Value != 0) { Fail(command, lease, "PRP2", command.Prp2, 1, null, "the transfer ends in PRP1's page, yet PRP2 is set"); }
            return;
        }
        if (remaining <= page)
        {
            Entry(command, lease, "PRP2", -1, command.Prp2, remaining, lease.Data);
            return;
        }
        // PRP2 is a list: one entry per further page; the last entry of a full list page chains to the next (§4.3).
        int perPage = (int)(page >> 3);
        ulong entries = (remaining + mask) >> lease.PageShift;
        DmaAddress listAt = command.Prp2;
        int index = 0;
        while (remaining > 0)
        {
            int onThisPage = (int)Math.Min((ulong)perPage - ((listAt.Value & mask) >> 3), entries);
            bool chains = entries > (ulong)onThisPage;
            Entry(command, lease, index == 0 ? "PRP2 (list)" : "PRP list chain entry", index == 0 ? -1 : index, listAt, (ulong)onThisPage * 8, lease.List);
            // SAFETY: the check above put [listAt, +onThisPage * 8) inside the leased list window, which is contiguous
            // from ListAddress, so the same offset from ListPointer lies in the list page's memory.
            var list = (DmaAddress*)(lease.ListPointer + (nint)(listAt.Value - lease.ListAddress.Value));
            int data = chains ? onThisPage - 1 : onThisPage;
            for (int i = 0; i < data; i++, index++)
            {
                ulong length = Math.Min(remaining, page);
                Entry(command, lease, "PRP list entry", index, list[i], length, lease.Data);
                remaining -= length;
                entries--;
            }
            if (chains) { listAt = list[onThisPage - 1]; index++; }
        }
    }

    // The field is named by a constant and an index (-1: none), formatted only on failure: the audit allocates nothing.
    private static void Entry(in NvmeCommand command, in Lease lease, string field, int index, DmaAddress address, ulong length, in DmaWindow window)
    {
        if (DmaAudit.Verify(address, length, window, out var buffer) is { } problem)
        {
            Fail(command, lease, index < 0 ? field : $"{field} {index}", address, length, buffer, problem);
        }
    }

    private static void Fail(in NvmeCommand command, in Lease lease, string field, DmaAddress address, ulong length, string? buffer, string problem) =>
        throw new DmaAuditViolationException(lease.Device, lease.Queue, $"CID {command.CommandId} (opcode 0x{command.Opcode:x2}) {field}",
            address, length, buffer, problem);
}
