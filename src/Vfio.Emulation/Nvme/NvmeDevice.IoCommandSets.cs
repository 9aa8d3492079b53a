using System.Buffers.Binary;
using Vfio.Spec.Nvme;

namespace Vfio.Emulation.Nvme;

// The I/O command set structures (NVMe 2.0 §5.17.2): the model reports CAP.CSS bit 6 and has one command set, NVM.
public sealed partial class NvmeDevice
{
    /// <summary>Identify CNS 06h (for CSI 00h only) and 1Ch into <paramref name="data"/>, or the status refusing them.</summary>
    private NvmeStatus IdentifyIoCommandSet(in NvmeCommand c, byte[] data)
    {
        var cns = (IdentifyCns)(c.Cdw10 & 0xFF);
        if (cns == IdentifyCns.IoCommandSetCombinations)
        {
            // One combination, at index 0: the NVM command set alone (bit 0).
            BinaryPrimitives.WriteUInt64LittleEndian(data, 1UL << (int)CommandSetIdentifier.Nvm);
            return default;
        }
        if ((CommandSetIdentifier)(c.Cdw11 >> 24) != CommandSetIdentifier.Nvm) { return Generic(GenericStatusCode.InvalidField); }
        // NVM Command Set Specification 1.0 Figure 93: Write Zeroes is bounded like any transfer (MDTS); Dataset
        // Management takes 256 ranges (DMRL 0 would say "not reported"), each and all together up to the namespace.
        data[1] = _options.Mdts;                                              // WZSL
        data[3] = 255;                                                        // DMRL: the byte's largest value (the model takes 256)
        BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(4), uint.MaxValue);   // DMRSL
        return default;
    }
}
