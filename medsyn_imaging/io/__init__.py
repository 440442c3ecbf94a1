"""Images in and out: the ``Volume`` type, DICOM (read, write, de-identify), NIfTI, PNG/JPEG, MedMNIST,
uploads, exports, display windows and preview grids."""
