"""Imaging: load DICOM/NIfTI/PNG, train image generators, preview and export synthetic scans."""

import streamlit as st

st.title("Imaging")
st.info("Not built yet: DICOM/NIfTI reading and writing and the image generator are planned.")

st.header("Imaging evaluation")
st.markdown(
    "Compare synthetic labelled images with a real dataset: FID/KID and precision/recall/density/coverage "
    "against the real-vs-real floor, a ResNet9 disease classifier trained on synthetic images and tested "
    "on real ones (TSTR) next to train-on-real (TRTR), and a memorisation check. Same as "
    "`medsyn imaging evaluate`. Sampling the generator from here is not connected yet: give its samples "
    "as an `.npz` (`images`, `labels`) or a folder of PNGs by class."
)
with st.form("imaging_evaluation"):
    real_name = st.selectbox("Real data (bundled)", ["pneumoniamnist", "breastmnist"])
    synthetic_path = st.text_input("Synthetic images: path of an .npz or a folder of PNGs by class")
    epochs = st.number_input("Classifier epochs (each model; about a minute per epoch on a CPU)", 1, 200, 5)
    modes = st.multiselect("Utility modes besides TRTR", ["tstr", "mix"], default=["tstr"])
    submitted = st.form_submit_button("Evaluate")
if submitted:
    if not synthetic_path.strip():
        st.error("Give the path of the synthetic images (.npz or folder of PNGs by class).")
    else:
        from medsyn_imaging.classifier import TrainConfig
        from medsyn_imaging.imaging_report import evaluate_synthetic_images, save_report_copy
        from medsyn_imaging.labelled_images import load_image_dataset, load_synthetic_images

        try:
            with st.spinner("Training classifiers and computing metrics…"):
                real = load_image_dataset(real_name)
                synthetic = load_synthetic_images(synthetic_path.strip(), real.class_names)
                report = evaluate_synthetic_images(real, synthetic, config=TrainConfig(epochs=int(epochs)),
                                                   modes=modes, synthetic_label=synthetic_path.strip())
                saved = save_report_copy(report)
        except (ValueError, FileNotFoundError) as exc:
            st.error(str(exc))
        else:
            st.success(f"Report saved ({saved.name}); it is also listed on the Evaluation page.")
            st.components.v1.html(report.to_html(), height=900, scrolling=True)
